"""A grant as a FHIR R4B Consent resource (what the patient and the grantee read through the API)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from consent.categories import categories_for, category_types
from consent.models import Grant
from consent.purposes import ALL_RESOURCE_TYPES, PURPOSE_SYSTEM, Action

GRANT_ID_SYSTEM = "urn:healthledger:grant"
USER_ID_SYSTEM = "urn:healthledger:user"
CHAIN_TX_SYSTEM = "urn:healthledger:chain-tx"
_ACTION_CODES = {Action.READ: "access", Action.WRITE: "correct", Action.RUN_MODEL: "use", Action.RUN_ANALYSIS: "use"}
_ACTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentaction"


def _status(grant: Grant, now: datetime) -> str:
    effective = grant.effective_status(now)
    return {
        "pending": "proposed",
        "recorded": "active",
        "not yet valid": "active",
        "expired": "inactive",
        "revoked": "inactive",
        "failed": "rejected",
    }[effective]


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def consent_id(grant: Grant) -> str:
    """FHIR ids are at most 64 characters: the grant id without its 0x prefix."""
    return grant.id[2:]


def _codes(categories: Sequence[str]) -> list[dict[str, Any]]:
    return [{"coding": [{"system": c.split("|", 1)[0], "code": c.split("|", 1)[1]}]} for c in categories]


def _narrowing(resource_types: Sequence[str], categories: Sequence[str]) -> dict[str, Any]:
    """The provision's `code` (categories narrowing every type) and, when some narrow one type only,
    one nested permit per type (its `class` and the `code` narrowing it, none when it is not narrowed)."""
    qualified = category_types(categories)
    if not qualified:
        return {"code": _codes(categories)} if categories else {}
    if ALL_RESOURCE_TYPES in resource_types:
        everywhere = categories_for(categories, ALL_RESOURCE_TYPES)
        out: dict[str, Any] = {"code": _codes(everywhere)} if everywhere else {}
        types = sorted(qualified)
    else:
        out = {}
        types = list(resource_types)
    nested = []
    for resource_type in types:
        part: dict[str, Any] = {
            "type": "permit",
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": resource_type}],
        }
        narrowing = categories_for(categories, resource_type)
        if narrowing:
            part["code"] = _codes(narrowing)
        nested.append(part)
    out["provision"] = nested
    return out


def grant_as_consent(grant: Grant, *, now: datetime | None = None) -> dict[str, Any]:
    """Render one grant; the output validates as an R4B Consent."""
    now = now or timezone.now()
    identifiers: list[dict[str, Any]] = [{"system": GRANT_ID_SYSTEM, "value": grant.id}]
    if grant.tx_hash:
        identifiers.append({"system": CHAIN_TX_SYSTEM, "value": grant.tx_hash})
    provision: dict[str, Any] = {
        "type": "permit",
        "period": {"start": _instant(grant.not_before), "end": _instant(grant.not_after)},
        "actor": [
            {
                "role": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]
                },
                "reference": {
                    "identifier": {"system": USER_ID_SYSTEM, "value": str(grant.grantee_id)},
                    "display": grant.grantee.get_full_name() or grant.grantee.get_username(),
                },
            }
        ],
        "action": [
            {"coding": [{"system": _ACTION_SYSTEM, "code": _ACTION_CODES[a], "display": a}]} for a in grant.actions
        ],
        "purpose": [{"system": PURPOSE_SYSTEM, "code": grant.purpose}],
    }
    if ALL_RESOURCE_TYPES not in grant.resource_types:
        provision["class"] = [{"system": "http://hl7.org/fhir/resource-types", "code": t} for t in grant.resource_types]
    provision.update(_narrowing(grant.resource_types, grant.categories))
    return {
        "resourceType": "Consent",
        "id": consent_id(grant),
        "meta": {"lastUpdated": _instant(grant.revoked_at or grant.recorded_at or grant.created_at)},
        "identifier": identifiers,
        "status": _status(grant, now),
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": f"Patient/{grant.patient.fhir_id}"}
        if grant.patient.fhir_id
        else {"display": "patient"},
        "dateTime": _instant(grant.created_at),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision,
    }
