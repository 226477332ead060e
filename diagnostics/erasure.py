"""What erasure takes from a patient's diagnostic jobs (registered with consent.services at start-up).

A job keeps its ids, model, status and its value-free reasons (kinds and limits, which say
nothing about the patient), but not the date of her care: the as-of date becomes the day
the job was asked for. The reasons' own words are sealed under a key erasure destroys.
"""

from __future__ import annotations

from django.db.models.functions import TruncDate

from diagnostics.models import DiagnosticJob
from records.models import Patient


def jobs_scrub(patient: Patient) -> int:
    """Replace the clinical as-of date of the patient's jobs by the request's day; returns how many jobs."""
    return DiagnosticJob.objects.filter(patient=patient).update(as_of=TruncDate("created_at"), as_of_from_inputs=False)
