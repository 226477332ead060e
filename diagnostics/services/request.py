"""Requesting a job: the consent decision, the idempotency key, and the dispatch row committed with the job."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import date

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from audit.models import Outcome
from audit.services import LogEvent, access_log_insert
from consent.pdp import decide
from consent.purposes import Action, Purpose
from diagnostics.dispatch import job_dispatch_add
from diagnostics.models import DiagnosticJob
from diagnostics.services.base import IdempotencyKeyReused, InvalidJobRequest, _input_types, _log, _owns, model_get
from healthledger.errors import KeyDestroyed, ResourceNotFound
from records.models import Patient

logger = logging.getLogger(__name__)


# The earliest day a model may run as of: no record holds data older, and every lookback
# (a few years at most) stays inside the calendar from there.
AS_OF_EARLIEST = date(1900, 1, 1)


def as_of_check(as_of: date, *, today: date) -> None:
    """InvalidJobRequest unless a model can run as of this day: from AS_OF_EARLIEST up to today."""
    if as_of > today:
        raise InvalidJobRequest("as-of cannot be in the future")
    if as_of < AS_OF_EARLIEST:
        raise InvalidJobRequest(f"as-of cannot be before {AS_OF_EARLIEST.isoformat()}")


def diagnostic_job_request(
    *,
    requester: User,
    patient: Patient,
    model_id: str,
    purpose: str | None = None,
    as_of: date | None = None,
    enqueue: bool = True,
    idempotency_key: str = "",
) -> DiagnosticJob:
    """Accept a model run on a patient's record for the requester; the job is dispatched when this commits.

    The patient runs models on their own record (purpose PATRQT); anyone else needs a
    recorded grant with action run-model covering every resource type the model reads, for
    the model's purpose. Without one the answer is ResourceNotFound, as for a record that
    does not exist, and the refusal is logged. `enqueue=False` leaves queuing to the caller
    (diagnostic_jobs_enqueue, for batches).

    The job and its dispatch row (diagnostics.dispatch) commit together: an accepted job reaches a
    worker even when the broker is down now. With an `idempotency_key`, a repeat of the same request
    by the same requester returns the job the first one made; the same key for a different request
    is IdempotencyKeyReused.
    """
    spec = model_get(model_id).spec
    today = timezone.now().date()
    fingerprint = _request_fingerprint(patient, spec.id, as_of, purpose)
    as_of_from_inputs = as_of is None  # the worker dates the assessment by its newest input
    as_of = as_of or today
    as_of_check(as_of, today=today)
    if idempotency_key:
        idempotency_key_check(idempotency_key)
        earlier = _job_for_key(requester, idempotency_key, fingerprint)
        if earlier is not None:
            return earlier
    own = _owns(requester, patient)
    expected = Purpose.PATRQT.value if own else spec.purpose
    purpose = purpose or expected
    if purpose != expected:
        raise InvalidJobRequest(
            f"model {spec.id} runs for purpose {spec.purpose}; on your own record the purpose is PATRQT",
            issue_code="business-rule",
        )
    decision = decide(
        actor=requester,
        patient_id=patient.pk,
        patient_user_id=patient.user_id,
        action=Action.RUN_MODEL,
        resource_types=_input_types(spec),
        purpose=purpose,
    )
    if not decision.permit:
        with transaction.atomic():
            access_log_insert(
                event=LogEvent(
                    actor=f"user:{requester.pk}",
                    action="diagnostics.job.request",
                    outcome=Outcome.DENY,
                    patient_ref=patient.pk,
                    purpose=purpose,
                    query=f"model={spec.id}",
                )
            )
        logger.info("diagnostic job refused basis=%s", decision.basis)
        raise ResourceNotFound("resource not found")
    if Patient.objects.filter(pk=patient.pk, erased_at__isnull=False).exists():
        raise KeyDestroyed("this patient's record was erased; no model can run on it")
    try:
        with transaction.atomic():
            job = DiagnosticJob.objects.create(
                requester=requester,
                patient=patient,
                model_id=spec.id,
                model_version=spec.version,
                model_version_hash=spec.version_hash,
                purpose=purpose,
                grant_id=decision.grant_id or None,
                as_of=as_of,
                as_of_from_inputs=as_of_from_inputs,
                idempotency_key=idempotency_key,
                idempotency_fingerprint=fingerprint if idempotency_key else "",
            )
            _log(
                job,
                actor=f"user:{requester.pk}",
                action="diagnostics.job.request",
                outcome=Outcome.PERMIT,
                query=f"model={spec.id}",
            )
            if enqueue:
                job_dispatch_add(job_ids=[str(job.id)])
    except IntegrityError:
        # Two requests with one key at once: the other one's job committed first (the unique key waited for it).
        earlier = _job_for_key(requester, idempotency_key, fingerprint) if idempotency_key else None
        if earlier is None:
            raise
        return earlier
    logger.info("diagnostic job accepted id=%s model=%s", job.id, spec.id)
    return job


IDEMPOTENCY_KEY_MAX = 128


def idempotency_key_check(key: str) -> None:
    """InvalidJobRequest unless the key is 1 to 128 visible ASCII characters."""
    if not 0 < len(key) <= IDEMPOTENCY_KEY_MAX or not all(33 <= ord(ch) <= 126 for ch in key):
        raise InvalidJobRequest(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters")


def _request_fingerprint(patient: Patient, model_id: str, as_of: date | None, purpose: str | None) -> str:
    # What was asked, as asked: a retry tomorrow without as-of is still the same request.
    asked = f"{patient.pk}|{model_id}|{as_of.isoformat() if as_of else ''}|{purpose or ''}"
    return hashlib.sha256(asked.encode()).hexdigest()


def _job_for_key(requester: User, key: str, fingerprint: str) -> DiagnosticJob | None:
    job = DiagnosticJob.objects.filter(requester=requester, idempotency_key=key).first()
    if job is not None and job.idempotency_fingerprint != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was already used for a different request")
    return job


def diagnostic_jobs_enqueue(*, job_ids: Sequence[str], batch_size: int = 1) -> int:
    """Dispatch existing jobs on commit, `batch_size` job ids per task message; returns the number of messages.

    Batching spreads one message's broker round trip over several jobs; each job in a batch
    is still run, counted and released on its own, exactly as if it had its own message.
    """
    ids = [str(job_id) for job_id in job_ids]
    with transaction.atomic():
        job_dispatch_add(job_ids=ids, batch_size=max(1, batch_size))
    return -(-len(ids) // max(1, batch_size))
