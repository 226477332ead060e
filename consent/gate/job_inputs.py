"""A diagnostic job's read of its inputs: one decision over every declared type, one statement, one logged read.

The decision is the same as a search's (consent.pdp.decide, with a grant's category narrowing); the cost
is what changes: a job reads its record's Patient resource and each declared type in one fixed, prepared
statement (records.job_inputs) and logs one `records.search` entry with the job id naming every version
served, instead of a decision, a query and an entry per type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from audit.services import access_log_commit
from consent.categories import categories_for
from consent.gate.caller import Caller
from consent.gate.decisions import _decide, _deny, _event
from consent.gate.opening import _integrity_raise, _open_each
from consent.pdp import Decision
from consent.purposes import Action
from records.job_inputs import TypeSearch, stored_job_inputs
from records.models import Patient
from records.selectors import SearchCriteria, StoredVersion, resource_matching

ACTION = "records.search"


@dataclass(frozen=True)
class JobInputs:
    """What the gate served: each version's reference and body, the record's Patient resource first (when asked)."""

    references: list[str]
    bodies: list[bytes]


def _query_text(patient: Patient, searches: Sequence[TypeSearch], patient_resource: bool) -> str:
    texts = [f"Patient/{patient.fhir_id}"] if patient_resource else []
    texts += [f"{s.resource_type}?code={','.join(s.codes)}" if s.codes else f"{s.resource_type}?" for s in searches]
    return "; ".join(texts)


def _narrowed(
    stored: list[StoredVersion],
    patient: Patient,
    decision: Decision,
    searches: Sequence[TypeSearch],
    patient_resource: bool,
) -> list[StoredVersion]:
    """A grant narrowing a type to categories: only that type's versions indexed under one of them."""
    for search in [*([TypeSearch("Patient")] if patient_resource else []), *searches]:
        narrowing = categories_for(decision.categories, search.resource_type)
        if not narrowing:
            continue
        criteria = SearchCriteria(codes=(search.codes,) if search.codes else ())
        allowed = set(
            resource_matching(
                patient=patient, resource_type=search.resource_type, criteria=criteria, categories_any=narrowing
            ).values_list("fhir_id", flat=True)
        )
        stored = [s for s in stored if s.resource_type != search.resource_type or s.fhir_id in allowed]
    return stored


def job_inputs_read(
    *,
    caller: Caller,
    patient: Patient,
    searches: Sequence[TypeSearch],
    patient_resource: bool,
    action: str = Action.RUN_MODEL,
) -> JobInputs:
    """Read a job's declared inputs from one record: its Patient resource (when asked) and each type search.

    A deny raises ResourceNotFound, its entry committed first. A permit decrypts every version found and
    commits one permit entry naming each of them before a byte is returned (inside a caller's transaction,
    with it). A version failing its integrity check fails the read as a whole, as a search does: its
    `records.integrity` entry is committed and IntegrityFailure raised, nothing served.
    """
    types = sorted({s.resource_type for s in searches} | ({"Patient"} if patient_resource else set()))
    query = _query_text(patient, searches, patient_resource)
    decision = _decide(caller, patient, action, types)
    if decision.permit and decision.output_grants:
        # Narrowing to a job's outputs takes ids (resource_search_counted); a job's inputs are never those.
        decision = Decision(permit=False, basis="not-own-job-output", grant_id=decision.grant_id)
    if not decision.permit:
        raise _deny(caller, patient, ACTION, decision, query=query)
    stored = stored_job_inputs(patient=patient, searches=searches, patient_resource=patient_resource)
    stored = _narrowed(stored, patient, decision, searches, patient_resource)
    opened, bodies, failed = _open_each(stored, patient)
    if failed:
        raise _integrity_raise(caller, patient, failed)
    references = [item.reference for item in opened]
    access_log_commit(event=_event(caller, patient, ACTION, decision, resource_ids=references, query=query))
    return JobInputs(references=references, bodies=bodies)
