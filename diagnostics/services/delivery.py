"""A delivery's bookkeeping on the job row, always under its row lock: start, terminal states, chain retries."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from audit.models import Outcome
from diagnostics.claim import job_claim
from diagnostics.models import DiagnosticJob, JobStatus
from diagnostics.services.base import RunOutcome, _log
from healthledger.errors import ChainUnavailable

logger = logging.getLogger(__name__)


# A job whose deliveries were lost this many times (worker killed, crashed, timed out hard) is poison: failed.
MAX_LOST_DELIVERIES = 5
# Orderly retries while the chain cannot be asked; with the backoff below, about 20 minutes in all.
MAX_CHAIN_RETRIES = 8
CHAIN_RETRY_BASE_SECONDS = 5
CHAIN_RETRY_MAX_SECONDS = 300


def _delivery_begin(job_id: str) -> DiagnosticJob | None:
    """Count this delivery and mark the job running; None when there is nothing to do.

    The common case is one statement (diagnostics.claim): a compare-and-set UPDATE (autocommitted, under the
    row lock it takes) returning the job with its requester, record and grant; a job that is missing,
    terminal or poison takes the locked path, which decides and says why.
    """
    job = job_claim(job_id=job_id, max_lost=MAX_LOST_DELIVERIES, now=timezone.now())
    return job if job is not None else _delivery_begin_locked(job_id)


def _delivery_begin_locked(job_id: str) -> DiagnosticJob | None:
    """_delivery_begin for a job the compare-and-set did not claim: missing, terminal, poison (or changed since)."""
    with transaction.atomic():
        # Locks the job row: two deliveries of one job (a redelivery racing a slow first one) must not
        # both count themselves, both see "queued", or one start work on a job the other just finished.
        job = (
            DiagnosticJob.objects.select_for_update(of=("self",))
            .select_related("requester", "patient", "grant")
            .filter(pk=job_id)
            .first()
        )
        if job is None or job.is_terminal:
            return None
        lost = job.deliveries - job.orderly_retries
        if lost >= MAX_LOST_DELIVERIES:
            _terminal(job, JobStatus.FAILED, f"poison: {lost} deliveries lost")
            logger.warning("diagnostic job failed after %d lost deliveries id=%s", lost, job.id)
            return None
        job.deliveries += 1
        job.status = JobStatus.RUNNING
        job.started_at = job.started_at or timezone.now()
        job.progress = 0
        job.save(update_fields=["deliveries", "status", "started_at", "progress", "updated_at"])
    return job


def _terminal(job: DiagnosticJob, status: str, reason: str = "", *, also: Sequence[str] = ()) -> None:
    """Set a terminal state on a job whose row the caller holds locked (saving the fields in `also` with it)."""
    job.status = status
    job.status_reason = reason[:255]
    job.finished_at = timezone.now()
    if status in (JobStatus.SUCCEEDED, JobStatus.INSUFFICIENT_DATA):
        job.progress = 100
    job.save(update_fields=["status", "status_reason", "finished_at", "progress", "updated_at", *also])


def _finish(job_id: uuid.UUID | str, status: str, reason: str, *, log_deny: bool = False) -> str:
    """End a job without a result (denied, failed), unless another delivery already ended it."""
    with transaction.atomic():
        # Same race as _delivery_begin: never overwrite a terminal state another delivery committed.
        job = DiagnosticJob.objects.select_for_update().get(pk=job_id)
        if job.is_terminal:
            return str(job.status)
        _terminal(job, status, reason)
        if log_deny:
            _log(job, actor=f"job:{job.id}", action="diagnostics.job.run", outcome=Outcome.DENY, reason=reason)
    logger.info("diagnostic job %s id=%s reason=%s", status, job_id, reason)
    return status


def _retry_later(job: DiagnosticJob, exc: ChainUnavailable) -> RunOutcome:
    with transaction.atomic():
        locked = DiagnosticJob.objects.select_for_update().get(pk=job.pk)  # same race as _delivery_begin
        if locked.is_terminal:
            return RunOutcome(status=str(locked.status))
        if locked.orderly_retries >= MAX_CHAIN_RETRIES:
            _terminal(locked, JobStatus.FAILED, "chain unavailable")
            return RunOutcome(status=JobStatus.FAILED)
        delay = min(CHAIN_RETRY_MAX_SECONDS, CHAIN_RETRY_BASE_SECONDS * 2**locked.orderly_retries)
        locked.orderly_retries += 1
        locked.status = JobStatus.QUEUED
        locked.progress = 0
        locked.save(update_fields=["orderly_retries", "status", "progress", "updated_at"])
    logger.warning("diagnostic job waits for the chain id=%s retry_in=%ss (%s)", job.pk, delay, type(exc).__name__)
    return RunOutcome(status=JobStatus.QUEUED, retry_in=delay)
