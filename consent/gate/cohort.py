"""Cohort reads: a research chunk's participants read together, each decided under their own grant, each logged once.

The decision is the same as a single read's (consent.pdp.decide, on the participant's own live grants,
asked for the whole chunk in one statement); what changes is the cost: a chunk of participants is a
handful of statements (grants, each query's stored versions, one insert of the log entries) instead
of several round trips and a commit per participant. Each participant read has exactly one
`records.search` entry naming every version served; each one denied has one deny entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from audit.services import LogEvent, access_log_append_many
from consent.categories import categories_for
from consent.gate.caller import Caller
from consent.gate.decisions import _decide, _event
from consent.gate.opening import _integrity_raise, _open_each
from consent.pdp import Decision, live_grants_of_patients
from consent.purposes import Action, Purpose
from healthledger.errors import KeyDestroyed
from records import decrypt
from records.models import Patient
from records.selectors import (
    SearchCriteria,
    StoredVersion,
    resource_matching,
    stored_matching_of_patients,
    stored_patient_resources,
)

ACTION = "records.search"


@dataclass(frozen=True)
class CohortQuery:
    """One search of every participant's record: resources of a type carrying one of `codes` (none: all of it)."""

    resource_type: str
    codes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return f"{self.resource_type}?code={','.join(self.codes)}" if self.codes else f"{self.resource_type}?"


@dataclass(frozen=True)
class CohortRecord:
    """What the gate served of one participant: their Patient resource (when asked for) and each query's bodies."""

    patient: bytes | None
    found: tuple[tuple[bytes, ...], ...]


def _decisions(
    caller: Caller, patients: Sequence[Patient], action: str, types: Sequence[str]
) -> list[tuple[Patient, Decision]]:
    now = timezone.now()
    grants = (
        live_grants_of_patients(
            grantee_id=caller.actor.pk, patient_ids=[p.pk for p in patients], purpose=caller.purpose, at=now
        )
        if caller.actor is not None
        else {}
    )
    decided = []
    for patient in patients:
        decision = _decide(caller, patient, action, types, at=now, grants=grants.get(patient.pk, []))
        if decision.permit and decision.output_grants:
            # Narrowing to a job's outputs takes ids (resource_search_counted); a cohort read does not.
            decision = Decision(permit=False, basis="not-own-job-output", grant_id=decision.grant_id)
        decided.append((patient, decision))
    return decided


def _narrow(
    stored: list[StoredVersion], patient: Patient, decision: Decision, query: CohortQuery
) -> list[StoredVersion]:
    """A grant narrowing this type to categories: only the versions indexed under one of them."""
    narrowing = categories_for(decision.categories, query.resource_type)
    if not narrowing or not stored:
        return stored
    criteria = SearchCriteria(codes=(query.codes,) if query.codes else ())
    allowed = set(
        resource_matching(
            patient=patient, resource_type=query.resource_type, criteria=criteria, categories_any=narrowing
        ).values_list("fhir_id", flat=True)
    )
    return [item for item in stored if item.fhir_id in allowed]


def _served(
    permitted: list[tuple[Patient, Decision]], queries: Sequence[CohortQuery], patient_resource: bool
) -> dict[uuid.UUID, list[list[StoredVersion]]]:
    """Per permitted participant: their Patient resource's version (first, when asked for), then each query's."""
    patients = [p for p, _ in permitted]
    by_patient: dict[uuid.UUID, list[list[StoredVersion]]] = {p.pk: [] for p in patients}
    asked = ([CohortQuery("Patient", ())] if patient_resource else []) + list(queries)
    for index, query in enumerate(asked):
        if index == 0 and patient_resource:
            stored = stored_patient_resources(patients=patients)
        else:
            stored = stored_matching_of_patients(
                patients=patients, resource_type=query.resource_type, codes=query.codes
            )
        grouped: dict[uuid.UUID, list[StoredVersion]] = {}
        for item in stored:
            grouped.setdefault(item.patient_id, []).append(item)
        for patient, decision in permitted:
            by_patient[patient.pk].append(_narrow(grouped.get(patient.pk, []), patient, decision, query))
    return by_patient


def cohort_read(
    *,
    caller: Caller,
    patients: Sequence[Patient],
    queries: Sequence[CohortQuery],
    patient_resource: bool,
    action: str = Action.RUN_ANALYSIS,
) -> dict[uuid.UUID, CohortRecord]:
    """Read several participants' records, each under their own grant: patient id -> what was served.

    A participant missing from the answer was denied (their deny is logged, committed before this
    returns), or has no Patient resource when one was asked for, or was erased (nothing is logged for
    what was not read). Each one read has one permit entry naming every version served, committed
    with the read, before a byte leaves. A version failing its integrity check fails the whole read,
    as a search does: its `records.integrity` entry is committed and IntegrityFailure raised.
    """
    if caller.purpose == Purpose.ETREAT:
        raise ValueError("break-glass opens one record at a time, never a cohort")
    types = sorted({q.resource_type for q in queries} | ({"Patient"} if patient_resource else set()))
    decided = _decisions(caller, patients, action, types)
    denied = [_event(caller, p, ACTION, d, query=_query_text(p, queries, patient_resource)) for p, d in decided
              if not d.permit]  # fmt: skip
    if denied:
        with transaction.atomic():  # committed on their own, whatever happens to the read: never rolled back
            access_log_append_many(events=denied)
    permitted = [(p, d) for p, d in decided if d.permit]
    with transaction.atomic():
        stored = _served(permitted, queries, patient_resource)
        # The chunk's keys in one key-store call, not one or two per participant (their log keys seal the queries).
        decrypt.stored_versions_keys_prefetch([item for parts in stored.values() for part in parts for item in part])
        served, events, broken = _opened(caller, permitted, stored, queries, patient_resource)
        if broken is None:
            access_log_append_many(events=events)
    if broken is not None:  # outside the read's transaction: the finding is committed, nothing was served
        raise _integrity_raise(caller, broken[0], broken[1])
    return served


def _opened(
    caller: Caller,
    permitted: list[tuple[Patient, Decision]],
    stored: dict[uuid.UUID, list[list[StoredVersion]]],
    queries: Sequence[CohortQuery],
    patient_resource: bool,
) -> tuple[dict[uuid.UUID, CohortRecord], list[LogEvent], tuple[Patient, list[str]] | None]:
    """Decrypt each permitted participant's versions, with their one permit entry; stop at an integrity failure."""
    served: dict[uuid.UUID, CohortRecord] = {}
    events: list[LogEvent] = []
    for patient, decision in permitted:
        parts = stored[patient.pk]
        if patient_resource and not parts[0]:
            continue  # no Patient resource: nothing read, nothing logged
        flat = [item for part in parts for item in part]
        try:
            _, bodies, failed = _open_each(flat, patient)
        except KeyDestroyed:
            continue  # erased since the freeze: it can never be read again
        if failed:
            return {}, [], (patient, failed)
        served[patient.pk] = _record(parts, bodies, patient_resource)
        references = list(dict.fromkeys(item.reference for item in flat))
        query = _query_text(patient, queries, patient_resource)
        events.append(_event(caller, patient, ACTION, decision, resource_ids=references, query=query))
    return served, events, None


def _query_text(patient: Patient, queries: Sequence[CohortQuery], patient_resource: bool) -> str:
    texts = ([f"Patient/{patient.fhir_id}"] if patient_resource else []) + [q.text for q in queries]
    return "; ".join(texts)


def _record(parts: list[list[StoredVersion]], bodies: list[bytes], patient_resource: bool) -> CohortRecord:
    """Split the bodies (decrypted in the order of `parts`, flattened) back into the Patient and each query."""
    out: list[tuple[bytes, ...]] = []
    at = 0
    for part in parts:
        out.append(tuple(bodies[at : at + len(part)]))
        at += len(part)
    if patient_resource:
        return CohortRecord(patient=out[0][0], found=tuple(out[1:]))
    return CohortRecord(patient=None, found=tuple(out))
