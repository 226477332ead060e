"""Writes into a patient's record on someone's behalf: decided by the policy decision point, logged, stored.

A clinician adds resources under a grant that allows `write` for their types (and,
when the grant narrows a type to categories, only resources of that type in them); the patient adds to
their own record. The decision and the store's write commit together: a permit entry
("records.write" with the grant and the purpose) in the same transaction as the new
versions, or, on a deny, a deny entry in a transaction of its own and nothing stored.
A deny looks exactly like an unknown patient (ResourceNotFound).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from audit.models import Outcome
from audit.services import LogEvent, access_log_insert
from consent.categories import categories_for
from consent.gate import Caller
from consent.pdp import Decision, decide
from consent.purposes import Action
from healthledger.errors import ResourceNotFound
from records.fhir import Document, index_terms, parse_document
from records.ingest import IdMode
from records.models import Patient
from records.services import IngestResult, WriteContext, fhir_ingest

logger = logging.getLogger(__name__)

WRITE_ACTION = "records.write"


@dataclass(frozen=True)
class WriteResult:
    """What the write stored (IngestResult) and the validated document it came from."""

    ingest: IngestResult
    document: Document
    decision: Decision


def _event(caller: Caller, patient: Patient, decision: Decision, resource_ids: tuple[str, ...]) -> LogEvent:
    return LogEvent(
        actor=caller.ref,
        action=WRITE_ACTION,
        outcome=Outcome.PERMIT if decision.permit else Outcome.DENY,
        patient_ref=patient.pk,
        purpose=caller.purpose,
        grant_ref=decision.grant_id,
        resource_ids=resource_ids,
        job_id=caller.job_id,
    )


def _in_categories(document: Document, categories: tuple[str, ...]) -> bool:
    """Whether every entry is in one of the categories the grant narrows its type to (if it narrows it)."""
    for entry in document.entries:
        wanted = set(categories_for(categories, entry.resource_type))
        if wanted and not index_terms(entry.resource).categories & wanted:
            return False
    return True


def write_permitted(*, caller: Caller, patient: Patient, resource_type: str) -> Decision:
    """Whether the caller may write this type here, before the new content exists (a PATCH decides first).

    A deny is logged in its own transaction, as record_write logs one, and raised as ResourceNotFound;
    record_write decides again on the content itself (the categories a narrowed grant allows).
    """
    decision = decide(
        actor=caller.actor,
        patient_id=patient.pk,
        patient_user_id=patient.user_id,
        action=Action.WRITE,
        resource_types=[resource_type],
        purpose=caller.purpose,
        reason=caller.reason,
        patient_context=caller.patient_context,
    )
    if not decision.permit:
        with transaction.atomic():
            access_log_insert(event=_event(caller, patient, decision, ()))
        logger.info("write deny basis=%s", decision.basis)
        raise ResourceNotFound("resource not found")
    return decision


def record_write(*, caller: Caller, patient: Patient, payload: bytes) -> WriteResult:
    """Validate a FHIR document (a resource or a transaction/batch Bundle), decide `write`, store it, log it.

    Raises InvalidFHIR / DocumentTooLarge for a bad document (before anything is decided),
    ResourceNotFound when the caller may not write here (logged as a deny), and whatever
    records.services.fhir_ingest raises (KeyDestroyed for an erased record).
    """
    document = parse_document(payload)
    types = sorted({entry.resource_type for entry in document.entries})
    decision = decide(
        actor=caller.actor,
        patient_id=patient.pk,
        patient_user_id=patient.user_id,
        action=Action.WRITE,
        resource_types=types,
        purpose=caller.purpose,
        reason=caller.reason,
        patient_context=caller.patient_context,
    )
    if decision.permit and not _in_categories(document, decision.categories):
        decision = Decision(permit=False, basis="category-not-granted", grant_id=decision.grant_id)
    if not decision.permit:
        # Its own transaction, committed before the caller answers, so the deny is never rolled back.
        with transaction.atomic():
            access_log_insert(event=_event(caller, patient, decision, ()))
        logger.info("write deny basis=%s", decision.basis)
        raise ResourceNotFound("resource not found")
    # The store writes the one "records.write" permit entry, with this decision's purpose and
    # grant, in the transaction of the new versions; the document is not validated twice.
    # A single resource is a create (its id, if any, is ignored as FHIR says); a Bundle is
    # an upload of the caller's source, whose re-upload updates what the first one stored.
    result = fhir_ingest(
        mode=IdMode.CREATE if document.kind == "resource" else IdMode.IMPORT,
        payload=payload,
        actor=caller.ref,
        patient=patient,
        document=document,
        context=WriteContext(purpose=caller.purpose, grant_ref=decision.grant_id, job_id=caller.job_id),
    )
    return WriteResult(ingest=result, document=document, decision=decision)
