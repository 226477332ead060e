"""A patient's grants, each with the status and words a person would give it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from consent.categories import categories_for, category_types
from consent.models import Grant, GrantStatus
from consent.purposes import ALL_RESOURCE_TYPES, Purpose
from healthledger.errors import ResourceNotFound
from portal.plain import type_words
from portal.selectors.people import directory_entry
from portal.share_terms import ACTION_WORDS
from records.models import Patient

LIVE_STATUSES = (GrantStatus.PENDING, GrantStatus.RECORDED)

CATEGORY_WORDS = {
    "vital-signs": "Vital signs",
    "laboratory": "Lab results",
    "social-history": "Social history",
    "survey": "Surveys and questionnaires",
    "imaging": "Imaging",
    "procedure": "Procedures",
    "exam": "Examinations",
}


def scope_words(grant: Grant) -> str:
    """What a grant covers, in words: "everything", or types, narrowed to categories."""
    if ALL_RESOURCE_TYPES in grant.resource_types:
        what = "Your whole record"
    else:
        what = ", ".join(type_words(t) for t in grant.resource_types)
    if not category_types(grant.categories):
        if grant.categories:
            what += f" (only: {_category_words(grant.categories)})"
        return what
    # Some categories narrow one type only: say which type each narrows.
    types = sorted(category_types(grant.categories)) if ALL_RESOURCE_TYPES in grant.resource_types else []
    everywhere = categories_for(grant.categories, ALL_RESOURCE_TYPES)
    parts = [f"{what} (only: {_category_words(everywhere)})" if everywhere else what] if types else []
    for resource_type in types or grant.resource_types:
        narrowing = categories_for(grant.categories, resource_type)
        words = type_words(resource_type)
        parts.append(f"{words} (only: {_category_words(narrowing)})" if narrowing else words)
    return ", ".join(parts)


def _category_words(categories: Sequence[str]) -> str:
    return ", ".join(CATEGORY_WORDS.get(c.split("|", 1)[1], c.split("|", 1)[1]) for c in categories)


@dataclass(frozen=True)
class GrantRow:
    grant: Grant
    status: str  # pending / recorded / expired / revoked / failed / not yet valid
    grantee_name: str
    scope: str
    purpose: str
    revocable: bool
    may: str = ""  # what the grantee may do, in words: "see, add to"


def grant_row(grant: Grant, now: datetime) -> GrantRow:
    status = grant.effective_status(now)
    return GrantRow(
        grant=grant,
        status=status,
        grantee_name=directory_entry(grant.grantee).words,
        scope=scope_words(grant),
        purpose=Purpose(grant.purpose).label,
        revocable=grant.status in LIVE_STATUSES,
        may=", ".join(ACTION_WORDS.get(a, a) for a in grant.actions),
    )


def patient_grants(*, patient: Patient, now: datetime) -> list[GrantRow]:
    """Every grant the patient made, newest first, with the status a person would give it."""
    grants = (
        Grant.objects.filter(patient=patient)
        .select_related("grantee", "grantee__clinician_profile")
        .order_by("-created_at")
    )
    return [grant_row(g, now) for g in grants]


def patient_grant_get(*, patient: Patient, grant_id: str) -> Grant:
    """One of the patient's own grants; another patient's id is as missing as an invented one."""
    grant = Grant.objects.select_related("grantee").filter(patient=patient, pk=grant_id).first()
    if grant is None:
        raise ResourceNotFound("grant not found")
    return grant
