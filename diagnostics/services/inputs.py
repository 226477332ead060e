"""Reading a job's declared inputs through the gate, as the job: one decision, one statement, one logged read."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson

from accounts.models import User
from consent.gate import Caller, TypeSearch, job_inputs_read
from consent.purposes import Action
from diagnostics import inference
from diagnostics.models import DiagnosticJob
from diagnostics.services.base import _ConsentGone, _Inputs
from healthledger.errors import ResourceNotFound
from records.models import Patient


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
    """Read the declared inputs through the gate as the job, each resource once, in one logged read.

    One gated read of the record (consent.gate.job_inputs_read): one decision over every declared type,
    one prepared statement for the record's Patient resource and every (type, codes) search, and one
    access-log entry with the job id naming every version served, committed before the model sees a
    byte. Each input then gets the resources carrying its own codes (inference.inputs_from_resources).
    """
    actor = requester or User.objects.get(pk=job.requester_id)
    caller = Caller(actor=actor, purpose=job.purpose, job_id=str(job.id))
    searches = [
        TypeSearch(rtype, tuple(sorted(codes))) for (rtype, _), codes in _input_searches(spec, job.as_of).items()
    ]
    wants_patient = any(item.resource_type == "Patient" for item in spec.inputs) and bool(patient.fhir_id)
    try:
        served = job_inputs_read(
            caller=caller, patient=patient, searches=searches, patient_resource=wants_patient, action=Action.RUN_MODEL
        )
    except ResourceNotFound:
        raise _ConsentGone from None  # the gate's deny (its entry committed): consent ended since the start
    read = _Inputs(references=served.references, bodies=served.bodies)
    pool = [orjson.loads(body) for body in served.bodies]
    read.values = inference.inputs_from_resources(spec, pool)
    if job.as_of_from_inputs:
        newest = inference.newest_input_day(spec, read.values, upto=job.as_of)
        if newest is not None and newest != job.as_of:
            job.as_of = newest
            job.save(update_fields=["as_of", "updated_at"])
    return read
