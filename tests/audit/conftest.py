"""Fixtures for the access log: a log of distinct entries, appended, then sealed."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.db import transaction

from audit.models import AccessLogEntry
from audit.services import LogEvent, access_log_append_many, access_log_seal
from tests.ledger.conftest import chain  # noqa: F401 - the in-process EVM, for the anchoring tests

PATIENT = uuid.UUID("6f1c2a4e-0000-4000-8000-000000000001")


def event(n: int, **changes: object) -> LogEvent:
    fields: dict[str, object] = {
        "actor": f"user:{n}",
        "action": "records.read",
        "outcome": "permit",
        "patient_ref": PATIENT,
        "purpose": "TREAT",
        "grant_ref": f"0x{n:064x}",
        "resource_ids": [f"Observation/{n}"],
    }
    fields.update(changes)
    return LogEvent(**fields)  # type: ignore[arg-type]


def append(count: int, *, start: int = 0) -> list[AccessLogEntry]:
    with transaction.atomic():
        return access_log_append_many(events=[event(start + n) for n in range(count)])


@pytest.fixture
def sealed_log(db: None) -> Callable[..., list[AccessLogEntry]]:
    """Append `count` distinct entries and seal them in checkpoints of `per_checkpoint`; entries in seq order."""

    def make(count: int, *, per_checkpoint: int = 8) -> list[AccessLogEntry]:
        append(count)
        access_log_seal(max_entries=per_checkpoint)
        return list(AccessLogEntry.objects.order_by("seq"))

    return make
