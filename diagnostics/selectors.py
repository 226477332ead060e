"""Reads of diagnostic jobs: the job rows carry no health data in clear; a sealed reason opens through the gate."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from accounts.models import User
from consent.gate import access_log_text
from diagnostics.models import DiagnosticJob
from records.models import Patient


def job_for_viewer(*, job_id: str, user: User) -> DiagnosticJob | None:
    """The job if `user` requested it or owns the record it runs on; None otherwise (and for a malformed id)."""
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:
        return None
    return (
        DiagnosticJob.objects.select_related("patient", "result")
        .filter(Q(requester_id=user.pk) | Q(patient__user_id=user.pk), pk=key)
        .first()
    )


def jobs_for_patient(*, patient: Patient, limit: int = 50) -> QuerySet[DiagnosticJob]:
    """The newest jobs run on a patient's record, whoever asked (the portal's AI page)."""
    return DiagnosticJob.objects.filter(patient=patient).select_related("result").order_by("-created_at")[:limit]


def jobs_for_requester(*, user: User, limit: int = 50) -> QuerySet[DiagnosticJob]:
    """The newest jobs a user requested."""
    return DiagnosticJob.objects.filter(requester=user).select_related("result").order_by("-created_at")[:limit]


def job_result_refs(job: DiagnosticJob) -> list[str]:
    """The released RiskAssessment and Provenance as plain references ("RiskAssessment/<id>"), none before release."""
    result = getattr(job, "result", None) if job.status == "succeeded" else None
    if result is None:
        return []
    return ["/".join(ref.split("/")[:2]) for ref in (result.risk_assessment_ref, result.provenance_ref)]


def job_reason_detail(job: DiagnosticJob) -> str:
    """The model's own words for why it did not run (values, dates, the excluding condition), opened for a viewer
    job_for_viewer allowed; "[erased]" once the patient is erased, "" when there is none."""
    if not job.reason_detail:
        return ""
    return access_log_text(patient_id=job.patient_id, text=job.reason_detail)
