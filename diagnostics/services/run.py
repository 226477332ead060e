"""One delivery of a job, end to end, and ending a job failed after an unexpected error."""

from __future__ import annotations

import logging
import traceback

from diagnostics.models import DiagnosticJob, JobStatus
from diagnostics.services.base import RunOutcome, UnknownModel, _ConsentGone, model_get
from diagnostics.services.consent_checks import _consent_check
from diagnostics.services.delivery import _delivery_begin, _finish, _retry_later
from diagnostics.services.inputs import _inputs_read
from diagnostics.services.release import _release
from healthledger.errors import ChainUnavailable, KeyDestroyed

logger = logging.getLogger(__name__)


def _where(exc: BaseException) -> str:
    # Type and place only: an exception's message may quote the data it choked on.
    frames = traceback.extract_tb(exc.__traceback__)
    place = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{place}"


def diagnostic_job_execute(*, job_id: str) -> RunOutcome:
    """One delivery of a job: check consent, read the declared inputs through the gate, run the model, release.

    Idempotent: a job already terminal does nothing. When the chain cannot be asked, the job
    goes back to queued and the outcome says when to retry (never runs unchecked).
    """
    job = _delivery_begin(job_id)
    if job is None:
        status = DiagnosticJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
        return RunOutcome(status=status or "missing", did_work=False)
    try:
        model = model_get(job.model_id)
        spec = model.spec
        if spec.version_hash != job.model_version_hash:
            return RunOutcome(status=_finish(job.pk, JobStatus.FAILED, "model version changed since the request"))
        reason, grant = _consent_check(job, spec)
        if reason:
            return RunOutcome(status=_finish(job.pk, JobStatus.DENIED, reason, log_deny=True))
        requester, patient = job.requester, job.patient  # read with the job's row (_delivery_begin)
        if patient.is_erased:
            return RunOutcome(status=_finish(job.pk, JobStatus.FAILED, "record erased"))
        try:
            inputs = _inputs_read(job, spec, patient, requester=requester)
        except _ConsentGone:
            return RunOutcome(status=_finish(job.pk, JobStatus.DENIED, "consent-ended (read denied)", log_deny=True))
        result = model.run(inputs.values, as_of=job.as_of)
        return RunOutcome(status=_release(job, spec, patient, inputs, result, grant=grant))
    except ChainUnavailable as exc:
        return _retry_later(job, exc)
    except KeyDestroyed:
        return RunOutcome(status=_finish(job.pk, JobStatus.FAILED, "record erased"))
    except UnknownModel:
        return RunOutcome(status=_finish(job.pk, JobStatus.FAILED, "model no longer available"))


def diagnostic_job_fail(*, job_id: str, error: BaseException) -> RunOutcome:
    """End a job failed after an unexpected error or its soft time limit; logs where, never what."""
    timed_out = type(error).__name__ == "SoftTimeLimitExceeded"
    reason = "time limit exceeded" if timed_out else f"error: {_where(error)}"
    logger.error("diagnostic job failed id=%s %s", job_id, reason)
    return RunOutcome(status=_finish(job_id, JobStatus.FAILED, reason), soft_time_limited=timed_out)
