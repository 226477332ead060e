"""A run's own access-log entries (as its job) and its ending."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from audit.models import Outcome
from audit.services import LogEvent, access_log_append
from consent.purposes import Purpose
from research.models import AnalysisRun, RunStatus


def _log(run: AnalysisRun, action: str, *, outcome: str = Outcome.PERMIT, query: str = "", reason: str = "") -> None:
    access_log_append(
        event=LogEvent(
            actor=f"job:{run.pk}",
            action=action,
            outcome=outcome,
            purpose=Purpose.HRESCH,
            job_id=str(run.pk),
            query=query,
            reason=reason,
        )
    )


def _end(run: AnalysisRun, status: str, reason: str, report: dict[str, Any] | None = None) -> None:
    run.status = status
    run.status_reason = reason[:255]
    run.report = report if report is not None else run.report
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "status_reason", "report", "result", "finished_at", "cohort_size"])
    _log(run, f"research.run.{status}", outcome=Outcome.PERMIT if status == RunStatus.SUCCEEDED else Outcome.DENY,
         query=f"study={run.study_id} run={run.pk}", reason=reason)  # fmt: skip
