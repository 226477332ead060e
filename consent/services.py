"""Issuing and revoking grants.

A grant is signed with the patient's key and written, with its outbox row and its
access-log entry, in one transaction; the relay records it on chain afterwards.
A revocation takes effect in the database at once: the next decision denies,
whatever the chain is doing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import account_scrub
from audit.services import LogEvent, access_log_append
from consent import gate
from consent.models import Grant, GrantStatus
from consent.purposes import ALL_RESOURCE_TYPES, GRANTABLE_PURPOSES, Action
from healthledger.errors import ConsentDenied, HealthLedgerError
from ledger import signing
from ledger.outbox import outbox_enqueue
from ledger.pseudonyms import pseudonymous_address
from ledger.selectors import signing_domain
from records.fhir.resource_types import RESOURCE_TYPES as KNOWN_RESOURCE_TYPES
from records.models import Patient
from records.services import patient_erase

logger = logging.getLogger(__name__)

MAX_GRANT_DURATION = timedelta(days=5 * 366)
# How far ahead a grant may start: as far as it may last. Also keeps every window's end inside the calendar.
MAX_GRANT_LEAD = MAX_GRANT_DURATION
GRANTEE_ROLES = frozenset({Role.CLINICIAN, Role.RESEARCHER})


class InvalidGrant(HealthLedgerError):
    """A grant request that cannot be honoured as asked (bad window, unknown type, wrong grantee ...)."""


def _actor(user: User) -> str:
    return f"user:{user.pk}"


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
    if any(c.count("|") != 1 for c in categories):
        raise InvalidGrant('categories are written "system|code"')


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


def grant_issue(
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
) -> Grant:
    """Sign a grant with the patient's key, store it pending and queue it for the chain, in one transaction."""
    if by.pk != patient.user_id or by.role != Role.PATIENT:
        raise ConsentDenied("only the patient can grant access to their record")
    now = timezone.now()
    _check_scope(
        grantee=grantee, resource_types=resource_types, actions=actions, purpose=purpose, categories=categories
    )
    # Seconds are what the chain compares; keep the database's window identical to the signed one.
    not_before = not_before.replace(microsecond=0)
    not_after = not_after.replace(microsecond=0)
    _check_window(not_before=not_before, not_after=not_after, now=now)
    chain_id, contract_address = signing_domain()
    commitment_salt = signing.new_salt()
    scope = scope_document(resource_types=resource_types, categories=categories, actions=actions, purpose=purpose)
    with transaction.atomic():
        private_key = gate.patient_signing_key(patient=patient)
        draft = Grant(
            patient=patient,
            grantee=grantee,
            resource_types=sorted(set(resource_types)),
            categories=sorted(set(categories)),
            actions=sorted(set(actions)),
            purpose=purpose,
            not_before=not_before,
            not_after=not_after,
            patient_address=signing.patient_address(private_key=private_key),
            grantee_address=pseudonymous_address(label=f"user:{grantee.pk}"),
            salt="0x" + signing.new_salt().hex(),
            commitment_salt="0x" + commitment_salt.hex(),
            scope_commitment="0x" + signing.scope_commitment(commitment_salt=commitment_salt, scope=scope).hex(),
        )
        struct = chain_grant(draft)
        draft.id = "0x" + signing.grant_id(struct).hex()
        signature = signing.grant_sign(
            struct, private_key=private_key, chain_id=chain_id, verifying_contract=contract_address
        )
        draft.signature = "0x" + signature.to_bytes().hex()
        draft.full_clean(exclude=["patient", "grantee"])
        draft.save(force_insert=True)
        outbox_enqueue(kind="grant", ref=draft.id, payload=_chain_payload(draft, draft.signature))
        access_log_append(
            event=LogEvent(
                actor=_actor(by),
                action="consent.grant.issue",
                outcome="permit",
                patient_ref=patient.pk,
                purpose=purpose,
                grant_ref=draft.id,
            )
        )
    logger.info("grant issued id=%s purpose=%s", draft.id[:18], purpose)
    return draft


def grant_revoke(*, grant: Grant, by: User) -> Grant:
    """Revoke now in the database (the next request is denied), then on chain through the outbox."""
    with transaction.atomic():
        # Locks the grant row: a relay confirming the grant at the same moment must not
        # overwrite the revocation with "recorded".
        locked = Grant.objects.select_for_update().select_related("patient").get(pk=grant.pk)
        if by.pk != locked.patient.user_id:
            raise ConsentDenied("only the patient can revoke their grant")
        return _revoke_locked(locked, actor=_actor(by))


def _revoke_locked(locked: Grant, *, actor: str) -> Grant:
    """Sign and record the revocation of a grant the caller holds locked, in the caller's transaction."""
    if locked.status == GrantStatus.REVOKED:
        return locked
    private_key = gate.patient_signing_key(patient=locked.patient)
    chain_id, contract_address = signing_domain()
    signature = signing.revoke_sign(
        bytes.fromhex(locked.id[2:]),
        private_key=private_key,
        chain_id=chain_id,
        verifying_contract=contract_address,
    )
    was_on_chain = locked.status == GrantStatus.RECORDED
    locked.status = GrantStatus.REVOKED
    locked.revoked_at = timezone.now()
    locked.revocation_signature = "0x" + signature.to_bytes().hex()
    locked.save(update_fields=["status", "revoked_at", "revocation_signature"])
    if was_on_chain:
        outbox_enqueue(kind="revoke", ref=locked.id, payload=_chain_payload(locked, locked.revocation_signature))
    # A grant still pending on chain is revoked there by grant_confirmed, once it lands:
    # a revoke sent first would be refused as an unknown grant.
    access_log_append(
        event=LogEvent(
            actor=actor,
            action="consent.grant.revoke",
            outcome="permit",
            patient_ref=locked.patient_id,
            purpose=locked.purpose,
            grant_ref=locked.id,
        )
    )
    logger.info("grant revoked id=%s", locked.id[:18])
    return locked


def patient_record_erase(*, patient: Patient, actor: str) -> Patient:
    """Erase a record, in the one order there is: end its sharing, then destroy its key, then its account's name.

    Every live grant is revoked first, signed with the patient's key while that key still
    exists (after the shred nobody could ever sign the revocations), and every grant's scope
    and commitment salt are cleared. Then the key is
    destroyed (records.services.patient_erase), the account is closed and its name and
    e-mail removed. One transaction: either all of it happened or none of it did. Used by
    the portal's erase page and the erase_patient command alike.
    """
    with transaction.atomic():
        # Locked so a grant issued while this runs cannot escape the revocations.
        Patient.objects.select_for_update().filter(pk=patient.pk).first()
        live = (
            Grant.objects.select_for_update()
            .select_related("patient")
            .filter(patient=patient, status__in=[GrantStatus.PENDING, GrantStatus.RECORDED])
        )
        for grant in live:
            _revoke_locked(grant, actor=actor)
        # What she shared, with whom and for what is about her: the scopes go, and with the commitment
        # salt the on-chain commitments can no longer be tied to any scope. The chain keeps the commitment.
        Grant.objects.filter(patient=patient).update(resource_types=[], categories=[], actions=[], commitment_salt="")
        erased = patient_erase(patient=patient, actor=actor)
        if erased.user_id is not None:
            account_scrub(user_id=erased.user_id)
    return erased


def grant_confirmed(*, grant_id: str, tx_hash: str, block_number: int | None) -> Grant | None:
    """Outbox handler: the grant is on chain. Marks it recorded, unless the patient revoked it meanwhile."""
    grant = Grant.objects.select_for_update().filter(pk=grant_id).first()  # same race as grant_revoke
    if grant is None:
        return None
    grant.tx_hash = tx_hash
    grant.block_number = block_number
    grant.recorded_at = timezone.now()
    if grant.status == GrantStatus.PENDING:
        grant.status = GrantStatus.RECORDED
    grant.save(update_fields=["tx_hash", "block_number", "recorded_at", "status"])
    if grant.status == GrantStatus.REVOKED:
        outbox_enqueue(kind="revoke", ref=grant.id, payload=_chain_payload(grant, grant.revocation_signature))
    return grant


def grant_chain_failed(*, grant_id: str, error: str) -> None:
    """Outbox handler: the chain refused the grant for good; it never becomes active."""
    Grant.objects.filter(pk=grant_id, status=GrantStatus.PENDING).update(status=GrantStatus.FAILED)
    logger.warning("grant refused by the chain id=%s error=%s", grant_id[:18], error[:80])


def revocation_confirmed(*, grant_id: str, tx_hash: str, block_number: int | None) -> None:
    """Outbox handler: the revocation is on chain."""
    Grant.objects.filter(pk=grant_id).update(revocation_tx_hash=tx_hash, revocation_block_number=block_number)
