"""Decide and log: the policy decision (with break-glass admission and a grant's narrowing) and its access-log entry."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from audit.models import Outcome
from audit.selectors import released_under_grants
from audit.services import LogEvent, access_log_commit
from consent.break_glass import break_glass_admit
from consent.categories import categories_for
from consent.gate.caller import Caller
from consent.pdp import (
    Decision,
    GrantRow,
    decide,
)
from healthledger.errors import ResourceNotFound
from records.logtext import log_text_seal
from records.models import Patient
from records.selectors import (
    SearchCriteria,
    resource_in_categories,
)

logger = logging.getLogger(__name__)


def _decide(
    caller: Caller,
    patient: Patient,
    action: str,
    resource_types: Sequence[str],
    *,
    at: datetime | None = None,
    grants: Sequence[GrantRow] | None = None,
) -> Decision:
    decision = decide(
        actor=caller.actor,
        patient_id=patient.pk,
        patient_user_id=patient.user_id,
        action=action,
        resource_types=resource_types,
        purpose=caller.purpose,
        reason=caller.reason,
        break_glass_code=caller.break_glass_code,
        interactive=caller.interactive,
        at=at,
        grants=grants,
        patient_context=caller.patient_context,
    )
    if decision.break_glass and caller.actor is not None:
        # The request may break the glass; whether this record, now, may be opened is the episode's rule.
        admission = break_glass_admit(
            clinician=caller.actor, patient=patient, code=caller.break_glass_code, reason=caller.reason, at=at
        )
        if admission.episode is None:
            return Decision(permit=False, basis=admission.refused)
    return decision


def _event(
    caller: Caller, patient: Patient, action: str, decision: Decision, *, query: str = "", **details: object
) -> LogEvent:
    # What a query or a reason says about the patient is sealed under a key erasure destroys;
    # the log's hashes cover the sealed form, so it verifies after the words are gone.
    return LogEvent(
        actor=caller.ref,
        action=action,
        outcome=Outcome.PERMIT if decision.permit else Outcome.DENY,
        patient_ref=patient.pk,
        purpose=caller.purpose,
        grant_ref=decision.grant_id,
        job_id=caller.job_id,
        query=log_text_seal(patient_id=patient.pk, text=query),
        reason=log_text_seal(patient_id=patient.pk, text=caller.reason if decision.break_glass else ""),
        break_glass=decision.break_glass,
        **details,  # type: ignore[arg-type]
    )


def _deny(
    caller: Caller, patient: Patient, action: str, decision: Decision, *, query: str = "", **details: object
) -> ResourceNotFound:
    # Its own transaction, committed before the caller answers, so a deny is never rolled back with the request.
    access_log_commit(event=_event(caller, patient, action, decision, query=query, **details))
    logger.info("gate deny action=%s basis=%s", action, decision.basis)
    return ResourceNotFound("resource not found")


def _narrowed(decision: Decision, patient: Patient, resource_type: str, resource_id: str) -> Decision:
    """A permit under a grant narrowing this type to categories holds only for a resource indexed under one of them."""
    narrowing = categories_for(decision.categories, resource_type)
    if decision.permit and narrowing:
        in_scope = resource_in_categories(
            patient=patient, resource_type=resource_type, resource_id=resource_id, categories=narrowing
        )
        if not in_scope:
            return Decision(permit=False, basis="category-not-granted", grant_id=decision.grant_id)
    if decision.permit and decision.output_grants:
        released = released_under_grants(
            patient_ref=patient.pk, grant_refs=decision.output_grants, resource_type=resource_type
        )
        if resource_id not in released:
            return Decision(permit=False, basis="not-own-job-output", grant_id=decision.grant_id)
        return replace(decision, grant_id=released[resource_id])
    return decision


def _outputs_only(decision: Decision, patient: Patient, resource_type: str, criteria: SearchCriteria) -> SearchCriteria:
    """A search under a run-model grant's permit sees only what the jobs run under those grants released."""
    released = released_under_grants(
        patient_ref=patient.pk, grant_refs=decision.output_grants, resource_type=resource_type
    )
    ids = tuple(i for i in (criteria.ids or sorted(released)) if i in released)
    # No released id left: an id that no resource has (ids are 1-64 of A-Za-z0-9-.), so nothing matches.
    return replace(criteria, ids=ids or ("~none~",))
