"""Verification with worker processes finds exactly what one process finds, and does the hashing in the workers.

Workers read the log through connections of their own, so the log must be committed:
these tests run outside the test transaction, and need a database other processes can
open (PostgreSQL here; SQLite's in-memory test database is private to this process).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.db.models import F

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


def test_a_clean_log_is_hashed_in_the_workers_and_verifies(log: list[AccessLogEntry]) -> None:
    report = access_log_verify(jobs=2)

    assert report.ok is True
    assert (report.entries_checked, report.checkpoints_checked) == (40, 5)
    assert report.entries_checked_in_workers == 40


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
    parallel = access_log_verify(jobs=2)

    assert alone.problem is not None
    assert (alone.problem.kind, alone.problem.seq) == (kind, seq)
    assert parallel.problem == alone.problem
    assert parallel.entries_checked == alone.entries_checked
    # Every checkpoint before the bad one was cleared by a worker; the bad one was classified here.
    assert parallel.entries_checked_in_workers == (seq // 8) * 8
