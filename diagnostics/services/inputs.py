"""Reading a job's declared inputs through the gate, as the job, with its progress."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import date
from typing import Any

import orjson
from django.utils import timezone

from accounts.models import User
from consent.gate import Caller, SearchCriteria, resource_read, resource_search_counted
from consent.purposes import Action
from diagnostics import inference
from diagnostics.models import DiagnosticJob, JobStatus
from diagnostics.services.base import _ConsentGone, _Inputs
from healthledger.errors import ResourceNotFound
from records.models import Patient

# Page size of one gated search of an input; a model needing more pages reads them all.
INPUT_PAGE = 500
# A job's progress is written at most this often. Each write is a commit of its own, and most jobs
# read their inputs in a few tens of milliseconds: those write none (the portal shows them running, then done).
PROGRESS_INTERVAL_SECONDS = 0.5


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
