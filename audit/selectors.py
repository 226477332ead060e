"""Reads of the access log for the surfaces (the patient's portal lists entries about her)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db.models import QuerySet

from audit.models import AccessLogEntry, Outcome


def access_log_entries_for_patient(*, patient_ref: uuid.UUID) -> QuerySet[AccessLogEntry]:
    """Every entry about one patient, newest first (served by the (patient_ref, at) index)."""
    return AccessLogEntry.objects.filter(patient_ref=patient_ref).order_by("-at", "-id")


# The action a diagnostic job's release is logged under (diagnostics.services writes it with the job's grant).
RESULT_RELEASE_ACTION = "diagnostics.result.release"


def released_under_grants(*, patient_ref: uuid.UUID, grant_refs: Sequence[str], resource_type: str) -> dict[str, str]:
    """The ids of `resource_type` that a job released on this patient under one of `grant_refs`, with that grant.

    The release entry is the record of which grant a model's output was made under: the
    consent gate lets a run-model grantee read those outputs, and only those.
    """
    if not grant_refs:
        return {}
    rows = AccessLogEntry.objects.filter(
        patient_ref=patient_ref, action=RESULT_RELEASE_ACTION, outcome=Outcome.PERMIT, grant_ref__in=list(grant_refs)
    ).values_list("grant_ref", "resource_ids")
    released: dict[str, str] = {}
    for grant_ref, refs in rows:
        for ref in refs or ():
            parts = str(ref).split("/")
            if len(parts) >= 2 and parts[0] == resource_type:
                released.setdefault(parts[1], grant_ref)
    return released
