"""A grant's terms: scope and window checks, the scope commitment, the draft the patient signs, its typed data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.utils import timezone

from accounts.models import Role, User
from consent.categories import split_category
from consent.models import Grant
from consent.purposes import ALL_RESOURCE_TYPES, GRANTABLE_PURPOSES, Action
from consent.services.signatures import _registered_address
from healthledger.errors import ConsentDenied, HealthLedgerError
from ledger import signing
from ledger.pseudonyms import pseudonymous_address
from ledger.selectors import signing_domain
from records.fhir.resource_types import RESOURCE_TYPES as KNOWN_RESOURCE_TYPES
from records.models import Patient

MAX_GRANT_DURATION = timedelta(days=5 * 366)


# How far ahead a grant may start: as far as it may last. Also keeps every window's end inside the calendar.
MAX_GRANT_LEAD = MAX_GRANT_DURATION


GRANTEE_ROLES = frozenset({Role.CLINICIAN, Role.RESEARCHER})


class InvalidGrant(HealthLedgerError):
    """A grant request that cannot be honoured as asked (bad window, unknown type, wrong grantee ...)."""


def _check_scope(
    *, grantee: User, resource_types: Sequence[str], actions: Sequence[str], purpose: str, categories: Sequence[str]
) -> None:
    if grantee.role not in GRANTEE_ROLES or not grantee.is_active:
        raise InvalidGrant("access can be granted to an active clinician or researcher only")
    if not resource_types:
        raise InvalidGrant("a grant names at least one resource type, or * for all")
    unknown = [t for t in resource_types if t != ALL_RESOURCE_TYPES and t not in KNOWN_RESOURCE_TYPES]
    if unknown:
        raise InvalidGrant(f"unknown FHIR resource type(s): {', '.join(sorted(unknown))}")
    valid_actions = {a.value for a in Action}
    if not actions or any(a not in valid_actions for a in actions):
        raise InvalidGrant(f"actions must be among {', '.join(sorted(valid_actions))}")
    if purpose not in GRANTABLE_PURPOSES:
        raise InvalidGrant(f"purpose {purpose!r} cannot be granted")
    _check_categories(resource_types, categories)


def _check_categories(resource_types: Sequence[str], categories: Sequence[str]) -> None:
    """Each entry "system|code" (narrows every type) or "Type:system|code" (narrows one of the grant's types)."""
    for entry in categories:
        qualifier, category = split_category(entry)
        if category.count("|") != 1:
            raise InvalidGrant(f'categories are written "system|code" or "Type:system|code", not {entry!r}')
        if not qualifier:
            continue
        if qualifier not in KNOWN_RESOURCE_TYPES:
            raise InvalidGrant(f"category {entry!r} names an unknown FHIR resource type {qualifier!r}")
        if ALL_RESOURCE_TYPES not in resource_types and qualifier not in resource_types:
            raise InvalidGrant(
                f"category {entry!r} narrows {qualifier}, which is not one of the grant's resource types"
            )


def _check_window(*, not_before: datetime, not_after: datetime, now: datetime) -> None:
    if not_after <= not_before:
        raise InvalidGrant("the grant must end after it starts")
    if not_after <= now:
        raise InvalidGrant("the grant would already have ended")
    if not_after - not_before > MAX_GRANT_DURATION:
        raise InvalidGrant("a grant lasts at most five years")
    if not_before - now > MAX_GRANT_LEAD:
        raise InvalidGrant("a grant starts at most five years from now")


def scope_document(
    *, resource_types: Sequence[str], categories: Sequence[str], actions: Sequence[str], purpose: str
) -> bytes:
    """The canonical scope the commitment hides: sorted lists, so equal scopes commit equally (with the same salt)."""
    return signing.canonical_scope_bytes(
        {
            "resource_types": sorted(set(resource_types)),
            "categories": sorted(set(categories)),
            "actions": sorted(set(actions)),
            "purpose": purpose,
        }
    )


def chain_grant(grant: Grant) -> signing.Grant:
    """The grant as the contract sees it: addresses, commitment, window in seconds, public salt."""
    return signing.Grant(
        patient=grant.patient_address,
        grantee=grant.grantee_address,
        scope_commitment=bytes.fromhex(grant.scope_commitment[2:]),
        not_before=int(grant.not_before.timestamp()),
        not_after=int(grant.not_after.timestamp()),
        salt=bytes.fromhex(grant.salt[2:]),
    )


def _chain_payload(grant: Grant, signature_hex: str) -> dict[str, object]:
    g = chain_grant(grant)
    return {
        "grant": {
            "patient": g.patient,
            "grantee": g.grantee,
            "scope_commitment": "0x" + g.scope_commitment.hex(),
            "not_before": g.not_before,
            "not_after": g.not_after,
            "salt": "0x" + g.salt.hex(),
        },
        "signature": signature_hex,
    }


def grant_draft(
    *,
    patient: Patient,
    by: User,
    grantee: User,
    resource_types: Sequence[str],
    actions: Sequence[str],
    purpose: str,
    not_before: datetime,
    not_after: datetime,
    categories: Sequence[str] = (),
    salt: str | None = None,
    commitment_salt: str | None = None,
) -> Grant:
    """The unsaved grant the patient is asked to sign: checked terms, fresh salts (or the given ones), its id.

    The browser signs `grant_typed_data(draft)`; grant_issue rebuilds the same draft from the same terms and
    salts, so the id and the typed data it verifies are the ones she saw.
    """
    if by.pk != patient.user_id or by.role != Role.PATIENT:
        raise ConsentDenied("only the patient can grant access to their record")
    _check_scope(
        grantee=grantee, resource_types=resource_types, actions=actions, purpose=purpose, categories=categories
    )
    # Seconds are what the chain compares; keep the database's window identical to the signed one.
    not_before = not_before.replace(microsecond=0)
    not_after = not_after.replace(microsecond=0)
    _check_window(not_before=not_before, not_after=not_after, now=timezone.now())
    commitment_bytes = _salt_bytes(commitment_salt) if commitment_salt else signing.new_salt()
    scope = scope_document(resource_types=resource_types, categories=categories, actions=actions, purpose=purpose)
    draft = Grant(
        patient=patient,
        grantee=grantee,
        resource_types=sorted(set(resource_types)),
        categories=sorted(set(categories)),
        actions=sorted(set(actions)),
        purpose=purpose,
        not_before=not_before,
        not_after=not_after,
        patient_address=_registered_address(patient),
        grantee_address=pseudonymous_address(label=f"user:{grantee.pk}"),
        salt="0x" + (_salt_bytes(salt) if salt else signing.new_salt()).hex(),
        commitment_salt="0x" + commitment_bytes.hex(),
        scope_commitment="0x" + signing.scope_commitment(commitment_salt=commitment_bytes, scope=scope).hex(),
    )
    draft.id = "0x" + signing.grant_id(chain_grant(draft)).hex()
    return draft


def _salt_bytes(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text[2:]) if text.startswith("0x") else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InvalidGrant("a salt is 0x followed by 64 hex digits")
    return raw


def grant_typed_data(grant: Grant) -> dict[str, object]:
    """The EIP-712 typed data of a grant (draft or stored), bound to this deployment: what the patient signs."""
    chain_id, contract_address = signing_domain()
    return signing.grant_typed_data(chain_grant(grant), chain_id=chain_id, verifying_contract=contract_address)


def revoke_typed_data(grant: Grant) -> dict[str, object]:
    """The EIP-712 typed data revoking a grant: what the patient signs to end it."""
    chain_id, contract_address = signing_domain()
    return signing.revoke_typed_data(
        bytes.fromhex(grant.id[2:]), chain_id=chain_id, verifying_contract=contract_address
    )
