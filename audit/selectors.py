"""Reads of the access log for the surfaces (the patient's portal lists entries about her)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from audit.models import AccessLogEntry


def access_log_entries_for_patient(*, patient_ref: uuid.UUID) -> QuerySet[AccessLogEntry]:
    """Every entry about one patient, newest first (served by the (patient_ref, at) index)."""
    return AccessLogEntry.objects.filter(patient_ref=patient_ref).order_by("-at", "-id")
