"""What erasure takes from a patient's diagnostic jobs (registered with consent.services at start-up).

A job keeps its ids, model and status (the access log names it), but nothing about the
patient's care: the as-of date, a clinical date, becomes the day the job was asked for,
and the reasons and their sealed words go.
"""

from __future__ import annotations

from django.db.models.functions import TruncDate

from diagnostics.models import DiagnosticJob
from records.models import Patient


def jobs_scrub(patient: Patient) -> int:
    """Clear the clinical dates and reasons of the patient's jobs; returns how many jobs were touched."""
    return DiagnosticJob.objects.filter(patient=patient).update(
        as_of=TruncDate("created_at"), as_of_from_inputs=False, status_reason="", reasons=[], reason_detail=""
    )
