"""Two sealers at once: the lock on the seal state must keep seqs dense and checkpoints chained."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from audit.models import AccessLogCheckpoint, AccessLogEntry
from audit.services import access_log_append_many, access_log_seal, access_log_verify
from tests.audit.conftest import event

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs row locks between real connections; SQLite's in-memory test database shares one cache and "
        "answers a second writer with a lock error instead of waiting",
    ),
]


def test_two_sealers_running_together_give_out_each_seq_once_and_chain_their_checkpoints() -> None:
    with transaction.atomic():
        access_log_append_many(events=[event(n) for n in range(400)])
    start = threading.Barrier(2)
    made: list[int] = []
    errors: list[BaseException] = []

    def seal() -> None:
        try:
            start.wait()
            made.extend(checkpoint.size for checkpoint in access_log_seal(max_entries=10))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=seal) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(made) == [10] * 40
    assert sorted(AccessLogEntry.objects.values_list("seq", flat=True)) == list(range(400))
    ranges = list(AccessLogCheckpoint.objects.order_by("first_seq").values_list("first_seq", "last_seq"))
    assert ranges == [(n, n + 9) for n in range(0, 400, 10)]
    assert access_log_verify().ok is True
