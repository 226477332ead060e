"""`manage.py verify_access_log` through Django's real command-line path, exit codes included."""

from __future__ import annotations

import re

import pytest
from django.core.management import ManagementUtility
from django.db import transaction

from audit.models import AccessLogEntry
from audit.services import access_log_append_many, access_log_seal
from tests.audit.conftest import event

# run_from_argv closes connections when done, which an enclosing test transaction would not survive.
pytestmark = pytest.mark.django_db(transaction=True)


def run(argv: list[str]) -> int:
    try:
        ManagementUtility(["manage.py", *argv]).execute()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def sealed(count: int) -> list[AccessLogEntry]:
    with transaction.atomic():
        access_log_append_many(events=[event(n) for n in range(count)])
    access_log_seal(max_entries=4)
    return list(AccessLogEntry.objects.order_by("seq"))


def test_a_clean_log_exits_0_with_a_summary(capsys) -> None:  # type: ignore[no-untyped-def]
    sealed(10)
    with transaction.atomic():
        access_log_append_many(events=[event(99)])
    assert run(["verify_access_log", "--no-chain"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(
        r"checked 10 entries in 3 checkpoints in [0-9.]+ s \([0-9,]+ entries/s, [0-9]+ of them in worker processes\); "
        r"1 entries not sealed yet\n"
        r"unprotected window [0-9]+ s \(maximum merge delay 600 s\): 1 entries not sealed \(oldest [0-9]+ s old\), "
        r"10 sealed entries after seq -1 not anchored \(oldest [0-9]+ s old\)\n"
        r"access log OK\n",
        out,
    )


def test_a_tampered_log_exits_1_naming_the_first_bad_entry(capsys) -> None:  # type: ignore[no-untyped-def]
    entries = sealed(10)
    AccessLogEntry.objects.filter(pk=entries[6].pk).update(action="records.write")
    assert run(["verify_access_log", "--no-chain"]) == 1
    err = capsys.readouterr().err
    assert f"edited at seq 6 (entry id {entries[6].pk}, checkpoint " in err
    assert "access log FAILED verification" in err


def test_a_deleted_entry_exits_1_naming_its_seq(capsys) -> None:  # type: ignore[no-untyped-def]
    entries = sealed(10)
    AccessLogEntry.objects.filter(pk=entries[0].pk).delete()
    assert run(["verify_access_log", "--no-chain"]) == 1
    assert "deleted at seq 0 (no entry row, checkpoint " in capsys.readouterr().err


def test_an_entry_older_than_the_maximum_merge_delay_still_unsealed_exits_1(capsys, settings) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    from audit.services import access_log_insert

    settings.AUDIT_MAX_MERGE_DELAY_SECONDS = 60
    with transaction.atomic():  # a forged entry, not sealed yet, dated before the window
        access_log_insert(event=event(7), at=timezone.now() - timedelta(seconds=120))

    assert run(["verify_access_log", "--no-chain"]) == 1
    err = capsys.readouterr().err
    assert "access log FAILED its maximum merge delay: entries older than the maximum merge delay of 60 s" in err
