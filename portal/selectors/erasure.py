"""What erasure destroyed and what remains, counted for the patient."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from audit.models import AccessLogEntry
from consent.models import Grant
from records.models import Patient, Resource, ResourceVersion


@dataclass(frozen=True)
class ErasureSummary:
    erased_at: datetime | None
    resources: int
    versions: int
    grants_on_chain: int
    log_entries: int


def erasure_summary(*, patient: Patient) -> ErasureSummary:
    """Counts of what erasure made unreadable and of what stays (row counts only, nothing decrypted)."""
    return ErasureSummary(
        erased_at=patient.erased_at,
        resources=Resource.objects.filter(patient=patient).count(),
        versions=ResourceVersion.objects.filter(resource__patient=patient).count(),
        grants_on_chain=Grant.objects.filter(patient=patient).filter(~Q(tx_hash="")).count(),
        log_entries=AccessLogEntry.objects.filter(patient_ref=patient.pk).count(),
    )
