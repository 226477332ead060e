"""Verification with worker processes finds exactly what one process finds, and does the hashing in the workers.

Workers read the log through connections of their own, so the log must be committed:
these tests run outside the test transaction, and need a database other processes can
open (PostgreSQL here; SQLite's in-memory test database is private to this process).

The test process runs other threads (a live server, for one), and workers are never forked
beside other threads, so the runs that must use workers go through `manage.py
verify_access_log --jobs` in a process of its own, as an operator runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import F

from audit import verification
from audit.models import AccessLogEntry
from audit.services import access_log_seal, access_log_verify
from tests.audit.conftest import append

pytestmark = pytest.mark.django_db(transaction=True)

SHIFT = 1_000_000


@pytest.fixture
def log() -> list[AccessLogEntry]:
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("worker processes cannot open SQLite's in-memory test database")
    append(40)
    access_log_seal(max_entries=8)  # seqs 0-7, 8-15, 16-23, 24-31, 32-39
    return list(AccessLogEntry.objects.order_by("seq"))


def verify_command(jobs: int) -> tuple[int, str]:
    """`manage.py verify_access_log --no-chain --jobs N` in a process of its own, on this test's database and keys."""
    db = connection.settings_dict
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{host}:{port}/{db['NAME']}",
        "HEALTHLEDGER_KEYS_DIR": str(settings.KEYS_DIR),
    }
    env.pop("HEALTHLEDGER_AUDIT_KEY", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "verify_access_log", "--no-chain", "--jobs", str(jobs)],
        cwd=Path(settings.BASE_DIR),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def in_workers(output: str) -> int:
    found = re.search(r"([0-9]+) of them in worker processes", output)
    assert found, output
    return int(found.group(1))


def test_a_clean_log_is_hashed_in_the_workers_and_verifies(log: list[AccessLogEntry]) -> None:
    code, output = verify_command(jobs=2)

    assert code == 0, output
    assert "checked 40 entries in 5 checkpoints" in output
    assert in_workers(output) == 40


@pytest.fixture
def another_thread() -> Iterator[threading.Thread]:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="holds-nothing", daemon=True)
    thread.start()
    yield thread
    release.set()
    thread.join()


def test_with_other_threads_running_nothing_is_forked_and_the_answer_is_the_same(
    log: list[AccessLogEntry], another_thread: threading.Thread
) -> None:
    _delete(log)

    report = access_log_verify(jobs=4)

    assert report.entries_checked_in_workers == 0
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("deleted", 27)


def _stalls(task: tuple[str, int, int, int]) -> bool:
    threading.Event().wait()  # a worker that never answers
    return True


def test_a_worker_that_never_answers_is_waited_for_a_bounded_time_and_its_work_done_here(
    log: list[AccessLogEntry], monkeypatch: pytest.MonkeyPatch
) -> None:
    _edit(log)
    # The forked workers run the module as it is at the fork: with the stall patched in.
    monkeypatch.setattr(verification, "_entries_as_signed", _stalls)
    monkeypatch.setattr(verification, "WORKER_ANSWER_SECONDS", 0.5)
    monkeypatch.setattr(verification.threading, "active_count", lambda: 1)  # fork despite this process's threads

    report = access_log_verify(jobs=2)

    assert report.entries_checked_in_workers == 0
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("edited", 19)


def _edit(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[19].pk).update(action="records.write")


def _delete(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[27].pk).delete()


def _renumber_after_delete(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[20].pk).delete()
    AccessLogEntry.objects.filter(seq__gt=20).update(seq=F("seq") + SHIFT)
    AccessLogEntry.objects.filter(seq__gte=SHIFT).update(seq=F("seq") - SHIFT - 1)


def _swap(log: list[AccessLogEntry]) -> None:
    a, b = log[33], log[35]
    AccessLogEntry.objects.filter(pk=a.pk).update(seq=SHIFT)
    AccessLogEntry.objects.filter(pk=b.pk).update(seq=a.seq)
    AccessLogEntry.objects.filter(pk=a.pk).update(seq=b.seq)


@pytest.mark.parametrize(
    ("tamper", "kind", "seq"),
    [
        (_edit, "edited", 19),
        (_delete, "deleted", 27),
        (_renumber_after_delete, "deleted", 20),
        (_swap, "reordered", 33),
    ],
)
def test_tampering_is_named_exactly_as_one_process_names_it(
    log: list[AccessLogEntry], tamper: Callable[[list[AccessLogEntry]], None], kind: str, seq: int
) -> None:
    tamper(log)

    alone = access_log_verify(jobs=1)
    code, parallel = verify_command(jobs=2)

    assert alone.problem is not None
    assert (alone.problem.kind, alone.problem.seq) == (kind, seq)
    assert code == 1
    assert f"{kind} at seq {seq} " in parallel
    # Every checkpoint before the bad one was cleared by a worker; the bad one was classified here.
    assert in_workers(parallel) == (seq // 8) * 8
