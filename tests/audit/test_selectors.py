from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from django.db import transaction

from audit.models import AccessLogEntry
from audit.selectors import access_log_entries_for_patient
from audit.services import access_log_append_many
from tests.audit.conftest import event

ALICE = uuid.UUID(int=1)
BOB = uuid.UUID(int=2)


def test_a_patients_entries_come_newest_first_and_only_hers(db: None) -> None:
    with transaction.atomic():
        rows = access_log_append_many(
            events=[event(1, patient_ref=ALICE), event(2, patient_ref=BOB), event(3, patient_ref=ALICE)]
        )
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for n, row in enumerate(rows):
        AccessLogEntry.objects.filter(pk=row.pk).update(at=start + timedelta(minutes=n))
    listed = list(access_log_entries_for_patient(patient_ref=ALICE).values_list("actor", flat=True))
    assert listed == ["user:3", "user:1"]
