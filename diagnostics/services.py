"""Diagnostic jobs: request one, run one (in a worker), and release its one result.

The run is built for at-least-once delivery. Every step that changes the job takes the
job's row lock and first checks the job is not already terminal, so a second delivery of
a finished job does nothing, and the release (RiskAssessment, Provenance, JobResult, log
entry and terminal state) is one transaction: it happens once or not at all.

Consent is checked three times: when the job is requested (the grant is recorded on the
job), when a delivery starts (database and chain), and right before the release
(database under the grant's row lock, and chain). Between those, every input read goes
through the gate, which decides again and logs the read with the job id: a revocation
seen at any point ends the job denied, with nothing read after it and nothing released.
"""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Role, User
from audit.models import Outcome
from audit.services import LogEvent, access_log_insert
from consent.chain import grant_active_on_chain
from consent.gate import Caller, SearchCriteria, resource_read, resource_search_counted
from consent.models import Grant, GrantStatus
from consent.pdp import decide
from consent.purposes import Action, Purpose
from diagnostics import fhir, inference
from diagnostics.dispatch import job_dispatch_add
from diagnostics.models import DiagnosticJob, JobResult, JobStatus
from healthledger.errors import ChainUnavailable, HealthLedgerError, KeyDestroyed, ResourceNotFound
from ledger.client import chain_client
from records.logtext import log_text_seal
from records.models import Patient
from records.services import fhir_ingest

logger = logging.getLogger(__name__)

# A job whose deliveries were lost this many times (worker killed, crashed, timed out hard) is poison: failed.
MAX_LOST_DELIVERIES = 5
# Orderly retries while the chain cannot be asked; with the backoff below, about 20 minutes in all.
MAX_CHAIN_RETRIES = 8
CHAIN_RETRY_BASE_SECONDS = 5
CHAIN_RETRY_MAX_SECONDS = 300
# Page size of one gated search of an input; a model needing more pages reads them all.
INPUT_PAGE = 500
# A job's progress is written at most this often. Each write is a commit of its own, and most jobs
# read their inputs in a few tens of milliseconds: those write none (the portal shows them running, then done).
PROGRESS_INTERVAL_SECONDS = 0.5
# The earliest day a model may run as of: no record holds data older, and every lookback
# (a few years at most) stays inside the calendar from there.
AS_OF_EARLIEST = date(1900, 1, 1)


class UnknownModel(HealthLedgerError):
    """No model has this id (400)."""


class InvalidJobRequest(HealthLedgerError):
    """A job request that cannot be honoured as asked (wrong purpose for the model ...) (400)."""


@dataclass
class IdempotencyKeyReused(HealthLedgerError):
    """An Idempotency-Key the requester already used for a different request (422)."""

    status: int = field(default=422, kw_only=True)
    issue_code: str = field(default="business-rule", kw_only=True)


@dataclass(frozen=True)
class RunOutcome:
    """What one delivery did: the job's status afterwards, and when to try again if the chain was unreachable."""

    status: str
    retry_in: int | None = None
    did_work: bool = True
    soft_time_limited: bool = False


@dataclass
class _Inputs:
    values: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


class _ConsentGone(Exception):
    """The gate denied a read mid-run: consent ended while the job was reading."""


def model_get(model_id: str) -> Any:
    """The model for an id, or UnknownModel naming the ids there are."""
    try:
        return inference.get_model(model_id)
    except KeyError:
        known = ", ".join(sorted(spec.id for spec in inference.list_models()))
        raise UnknownModel(f"unknown model {model_id!r}; known models: {known}", issue_code="not-supported") from None


def _input_types(spec: Any) -> list[str]:
    return sorted({item.resource_type for item in spec.inputs})


def _owns(user: User, patient: Patient) -> bool:
    return user.pk == patient.user_id and user.role == Role.PATIENT


def _log(job: DiagnosticJob, *, actor: str, action: str, outcome: str, **details: Any) -> None:
    access_log_insert(
        event=LogEvent(
            actor=actor,
            action=action,
            outcome=outcome,
            patient_ref=job.patient_id,
            purpose=job.purpose,
            grant_ref=job.grant_id or "",
            job_id=str(job.id),
            **details,
        )
    )


# --- Request -------------------------------------------------------------------------------


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


# --- Run ---------------------------------------------------------------------------------------


def _delivery_begin(job_id: str) -> DiagnosticJob | None:
    """Count this delivery and mark the job running, in a transaction of its own; None when there is nothing to do."""
    with transaction.atomic():
        # Locks the job row: two deliveries of one job (a redelivery racing a slow first one) must not
        # both count themselves, both see "queued", or one start work on a job the other just finished.
        job = DiagnosticJob.objects.select_for_update().filter(pk=job_id).first()
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


def _consent_reason(job: DiagnosticJob, spec: Any, *, grant: Grant | None, requester: User | None = None) -> str:
    """Empty when the job may still run and release; else why not. Database only (the mirror of the chain)."""
    patient = Patient.objects.only("id", "user_id", "erased_at").get(pk=job.patient_id)
    requester = requester or User.objects.get(pk=job.requester_id)
    decision = decide(
        actor=requester,
        patient_id=patient.pk,
        patient_user_id=patient.user_id,
        action=Action.RUN_MODEL,
        resource_types=_input_types(spec),
        purpose=job.purpose,
    )
    if not decision.permit:
        return f"consent-ended ({decision.basis})"
    if job.grant_id is None:
        return "" if decision.basis == "own-record" else "consent-ended (no grant)"
    # The job runs under the grant that permitted it; another grant issued since does not adopt it.
    if grant is None or grant.status != GrantStatus.RECORDED:
        return "consent-ended (grant revoked)"
    if grant.effective_status(timezone.now()) != GrantStatus.RECORDED:
        return "consent-ended (grant outside its window)"
    return ""


# (grant id, block number) -> the chain's isActive answer, shared by the jobs a worker runs in one batch.
_block_answers: ContextVar[dict[tuple[str, int], bool] | None] = ContextVar("diagnostics_block_answers", default=None)


@contextmanager
def chain_answers_per_block() -> Iterator[None]:
    """Within: the chain is asked about a grant at most once per block, whichever job of the batch asks.

    The chain's state changes only from one block to the next, so an answer given at block N is the
    answer for every check made while N is the latest block: each check still reads the latest block
    number, and a new block (a revocation mined) means asking again. Outside this context every check
    asks the chain itself.
    """
    token = _block_answers.set({})
    try:
        yield
    finally:
        _block_answers.reset(token)


def _chain_active(grant: Grant) -> bool:
    answers = _block_answers.get()
    if answers is None:
        return grant_active_on_chain(grant)
    key = (grant.id, chain_client().block_number())
    if key not in answers:
        answers[key] = grant_active_on_chain(grant)
    return answers[key]


def _chain_reason(job: DiagnosticJob, grant: Grant | None) -> str:
    """Empty when the chain says the job's grant is active (or the job needs none). Raises ChainUnavailable."""
    if job.grant_id is None or grant is None:
        return ""
    return "" if _chain_active(grant) else "consent-ended (not active on chain)"


def _consent_check(job: DiagnosticJob, spec: Any, requester: User) -> tuple[str, Grant | None]:
    """Why the job may not start ("" when it may), and the job's grant (its id, grantee and scope never change)."""
    grant = Grant.objects.filter(pk=job.grant_id).first() if job.grant_id else None
    return _consent_reason(job, spec, grant=grant, requester=requester) or _chain_reason(job, grant), grant


def _progress(job: DiagnosticJob, done: int, total: int) -> None:
    # Its own tiny commit, so the portal sees a slow job move while it is still reading; 90% tops until
    # released. Written at most every PROGRESS_INTERVAL_SECONDS: a fast job commits none.
    now = time.monotonic()
    marks = vars(job)
    if now - marks.setdefault("_progress_mark", now) < PROGRESS_INTERVAL_SECONDS:
        return
    marks["_progress_mark"] = now
    DiagnosticJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        progress=min(90, int(90 * done / max(1, total))), updated_at=timezone.now()
    )


def _input_searches(spec: Any, as_of: date) -> dict[tuple[str, date | None], set[str]]:
    """The model's declared inputs as few searches: (resource type, earliest date) -> every code declared for them.

    One search per type, over all of the record's history for the declared codes (the earliest date is
    None): the model applies each input's lookback itself, so it can say a value is stale and when it
    was taken. `as_of` stays in the signature for the day a search is bounded again.
    """
    searches: dict[tuple[str, date | None], set[str]] = {}
    whole: set[tuple[str, date | None]] = set()
    for item in spec.inputs:
        if item.resource_type == "Patient":
            continue
        # Read back past the lookback too: the model tells a value older than its window (stale, with its
        # date) from none at all, and a job without an as-of date is dated by its newest input.
        since = None
        searches.setdefault((item.resource_type, since), set()).update(item.codes)
        if item.value_set is not None:
            # ICD-10-CM ranges and drug names cannot be searched by token: the type is read whole (the
            # grant covers it) and the model is handed only what the value set holds.
            whole.add((item.resource_type, since))
    return {key: (set() if key in whole else codes) for key, codes in searches.items()}


def _inputs_read(job: DiagnosticJob, spec: Any, patient: Patient, *, requester: User | None = None) -> _Inputs:
    """Read the declared inputs through the gate as the job, each resource once and logged with the job id.

    One gated search per (type, lookback) with all its declared codes, instead of one per code, then
    each input gets the resources carrying its own codes (inference.inputs_from_resources).
    """
    actor = requester or User.objects.get(pk=job.requester_id)
    caller = Caller(actor=actor, purpose=job.purpose, job_id=str(job.id))
    vars(job)["_progress_mark"] = time.monotonic()
    read = _Inputs()
    pool: list[dict[str, Any]] = []
    searches = _input_searches(spec, job.as_of)
    wants_patient = any(item.resource_type == "Patient" for item in spec.inputs)
    total, done = len(searches) + int(wants_patient), 0
    if wants_patient:
        pool.extend(_patient_read(caller, patient, read))
        done += 1
        _progress(job, done, total)
    seen: set[str] = set()
    for (resource_type, since), codes in searches.items():
        for reference, body in _search_all(caller, patient, resource_type, tuple(sorted(codes)), since, job.as_of):
            if reference in seen:
                continue
            seen.add(reference)
            read.references.append(reference)
            read.bodies.append(body)
            pool.append(orjson.loads(body))
        done += 1
        _progress(job, done, total)
    read.values = inference.inputs_from_resources(spec, pool)
    if job.as_of_from_inputs:
        newest = inference.newest_input_day(spec, read.values, upto=job.as_of)
        if newest is not None and newest != job.as_of:
            job.as_of = newest
            job.save(update_fields=["as_of", "updated_at"])
    return read


def _patient_read(caller: Caller, patient: Patient, read: _Inputs) -> list[dict[str, Any]]:
    if not patient.fhir_id:
        return []
    try:
        body = resource_read(
            caller=caller,
            patient=patient,
            resource_type="Patient",
            resource_id=patient.fhir_id,
            action=Action.RUN_MODEL,
        )
    except ResourceNotFound:
        raise _ConsentGone from None  # a permitted read of the record's own Patient cannot miss: it was a deny
    resource = orjson.loads(body)
    # Versioned like the search's references, so provenance names exactly the version read.
    reference = f"Patient/{patient.fhir_id}/_history/{resource.get('meta', {}).get('versionId', '1')}"
    read.references.append(reference)
    read.bodies.append(body)
    return [resource]


def _search_all(
    caller: Caller, patient: Patient, resource_type: str, codes: tuple[str, ...], since: date | None, as_of: date
) -> Iterable[tuple[str, bytes]]:
    offset = 0
    criteria = SearchCriteria(codes=(codes,) if codes else (), date_ge=since, date_le=as_of if since else None)
    query = (
        resource_type
        + (f"?code={','.join(codes)}" if codes else "?")
        + (f"&date=ge{since.isoformat()}&date=le{as_of.isoformat()}" if since else "")
    )
    while True:
        try:
            page = resource_search_counted(
                caller=caller,
                patient=patient,
                resource_type=resource_type,
                criteria=criteria,
                limit=INPUT_PAGE,
                offset=offset,
                query=query,
                action=Action.RUN_MODEL,
            )
        except ResourceNotFound:
            raise _ConsentGone from None  # a search never misses: ResourceNotFound is the gate's deny
        yield from zip(page.references, page.bodies, strict=True)
        if len(page.references) < INPUT_PAGE:
            return
        offset += INPUT_PAGE


def _release(
    job: DiagnosticJob, spec: Any, patient: Patient, inputs: _Inputs, result: Any, *, grant: Grant | None
) -> str:
    """Store the result and end the job, in one transaction, unless consent ended or the job already ended.

    `grant` is the job's grant as read at the start: what the chain is asked about (id, grantee, scope) never
    changes; its status is read again under its row lock below.
    """
    # The chain is asked before the transaction so no row lock waits on the network; the database
    # check inside, under the grant's lock, is the one a revocation cannot slip past.
    chain_reason = _chain_reason(job, grant)
    with transaction.atomic():
        # Locks the job row: of two deliveries that both got here, the second waits and then finds
        # the job terminal, so a result is never released twice.
        locked = DiagnosticJob.objects.select_for_update().get(pk=job.pk)
        if locked.is_terminal:
            return str(locked.status)
        if job.grant_id:
            # Locks the grant row, as grant_revoke does: a revocation either commits before this check
            # (and the job is denied) or waits until the result is released (a release before the revocation).
            grant = Grant.objects.select_for_update().get(pk=job.grant_id)
        reason = _consent_reason(locked, spec, grant=grant) or chain_reason
        if reason:
            _terminal(locked, JobStatus.DENIED, reason)
            _log(locked, actor=f"job:{locked.id}", action="diagnostics.job.run", outcome=Outcome.DENY, reason=reason)
            return JobStatus.DENIED
        if result.status == "succeeded":
            released = _result_store(locked, spec, patient, inputs, result)
            _terminal(locked, JobStatus.SUCCEEDED)
            _log(
                locked,
                actor=f"job:{locked.id}",
                action="diagnostics.result.release",
                outcome=Outcome.PERMIT,
                resource_ids=(released.risk_assessment_ref, released.provenance_ref),
            )
            return JobStatus.SUCCEEDED
        _reasons_keep(locked, result)  # saved with the terminal state, in one statement
        _terminal(
            locked, JobStatus.INSUFFICIENT_DATA, "; ".join(locked.reason_lines), also=("reasons", "reason_detail")
        )
        # What the requester learns is which inputs the record lacks: a release too, so it is logged.
        _log(
            locked,
            actor=f"job:{locked.id}",
            action="diagnostics.result.release",
            outcome=Outcome.PERMIT,
            query="insufficient-data",
        )
        return JobStatus.INSUFFICIENT_DATA


def _reasons_keep(job: DiagnosticJob, result: Any) -> None:
    """Keep why the model did not run: structured and value-free in clear, its own words sealed for the patient."""
    # A model that names only what is missing (no reasons of its own) still gets one reason per name.
    job.reasons = list(result.reasons) or [{"input": name, "kind": "missing"} for name in result.missing]
    detail = "\n".join(f"{c.name.replace('_', ' ')}: {c.rule}" for c in result.contributions)
    job.reason_detail = log_text_seal(patient_id=job.patient_id, text=detail)


def _created(result: Any, resource_type: str) -> str:
    refs = [ref for writes in result.patients.values() for ref in writes.created + writes.updated]
    return next(ref for ref in refs if ref.startswith(resource_type + "/"))


def _result_store(job: DiagnosticJob, spec: Any, patient: Patient, inputs: _Inputs, result: Any) -> JobResult:
    now = timezone.now()
    actor = f"job:{job.id}"
    risk = fhir.risk_assessment(
        # The id sent is the job's: the store derives the server id from it, so the same job always
        # names the same RiskAssessment (a repeat could only version it, and the JobResult key refuses that).
        resource_id=str(job.id),
        job_id=str(job.id),
        spec=spec,
        patient_fhir_id=patient.fhir_id,
        as_of=job.as_of,
        outputs=result.outputs,
        contributions=result.contributions,
        summary=result.summary,
        basis=inputs.references,
    )
    risk_ref = _created(fhir_ingest(payload=orjson.dumps(risk), actor=actor, patient=patient), "RiskAssessment")
    risk_id = risk_ref.split("/")[1]
    stored_risk = {**risk, "id": risk_id}
    output_hash = fhir.output_hash(stored_risk)
    commitment = fhir.input_commitment(inputs.bodies)
    observation_ref = _observation_store(job, spec, patient, inputs, result)
    prov = fhir.provenance(
        job_id=str(job.id),
        spec=spec,
        target=risk_ref,
        sources=inputs.references,
        recorded=now,
        purpose=job.purpose,
        requester_ref=f"user:{job.requester_id}",
        input_commitment_hex=commitment,
        output_hash_hex=output_hash,
        as_of=job.as_of,
        grant_id=str(job.grant_id or ""),
        also_targets=(observation_ref,) if observation_ref else (),
    )
    prov["id"] = str(job.id)
    prov_ref = _created(fhir_ingest(payload=orjson.dumps(prov), actor=actor, patient=patient), "Provenance")
    return JobResult.objects.create(
        job=job,
        risk_assessment_ref=risk_ref,
        provenance_ref=prov_ref,
        input_commitment=commitment,
        output_hash=output_hash,
        input_refs=inputs.references,
        released_at=now,
    )


def _observation_store(job: DiagnosticJob, spec: Any, patient: Patient, inputs: _Inputs, result: Any) -> str:
    """Release the output a model declares as an Observation (eGFR, LOINC 98979-8); "" when it declares none."""
    declared = getattr(spec, "observation", None)
    value = result.outputs.get(declared[0]) if declared else None
    if value is None:
        return ""
    used = tuple(result.sources)
    derived = [ref for ref in inputs.references if "/".join(ref.split("/")[:2]) in used]
    observation = fhir.derived_observation(
        resource_id=str(job.id),
        job_id=str(job.id),
        spec=spec,
        patient_fhir_id=patient.fhir_id,
        as_of=job.as_of,
        value=value,
        derived_from=derived,
    )
    return _created(
        fhir_ingest(payload=orjson.dumps(observation), actor=f"job:{job.id}", patient=patient), "Observation"
    )


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
        requester = User.objects.get(pk=job.requester_id)
        reason, grant = _consent_check(job, spec, requester)
        if reason:
            return RunOutcome(status=_finish(job.pk, JobStatus.DENIED, reason, log_deny=True))
        patient = Patient.objects.get(pk=job.patient_id)
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


def diagnostic_job_fail(*, job_id: str, error: BaseException) -> RunOutcome:
    """End a job failed after an unexpected error or its soft time limit; logs where, never what."""
    timed_out = type(error).__name__ == "SoftTimeLimitExceeded"
    reason = "time limit exceeded" if timed_out else f"error: {_where(error)}"
    logger.error("diagnostic job failed id=%s %s", job_id, reason)
    return RunOutcome(status=_finish(job_id, JobStatus.FAILED, reason), soft_time_limited=timed_out)
