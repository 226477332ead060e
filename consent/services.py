"""Issuing and revoking grants.

A grant is signed with the patient's key and written, with its outbox row and its
access-log entry, in one transaction; the relay records it on chain afterwards.
A revocation takes effect in the database at once: the next decision denies,
whatever the chain is doing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import account_scrub
from audit.services import LogEvent, access_log_append
from consent import gate
from consent.key_chain import patient_key_on_chain_ensure
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


class SignatureRequired(ConsentDenied):
    """The patient holds her own key: only a signature she made in her browser can grant or revoke."""


class InvalidSignature(ConsentDenied):
    """A browser signature that does not recover the patient's registered address from the typed data."""


def _server_key(patient: Patient) -> bytes:
    """The key the operator holds for a patient who has not taken it yet; SignatureRequired once she has."""
    fresh = Patient.objects.only("id", "wallet_ciphertext", "erased_at").get(pk=patient.pk)
    if fresh.wallet_ciphertext is None and fresh.erased_at is None:
        raise SignatureRequired("you hold your own key: sign in your browser to grant or revoke")
    return gate.patient_signing_key(patient=patient)


def _registered_address(patient: Patient) -> str:
    address = Patient.objects.values_list("wallet_address", flat=True).get(pk=patient.pk)
    if not address:
        raise SignatureRequired("create your signing key first: nothing can be signed in your name yet")
    return str(address)


def _current_address(patient: Patient) -> str:
    return str(Patient.objects.values_list("wallet_address", flat=True).get(pk=patient.pk) or "")


def _verify(typed: dict[str, object], signature: str, expected: str, *, also: str = "") -> str:
    """The signature, checked to recover `expected` (or `also`) from exactly this typed data; refused otherwise."""
    try:
        signer = signing.recover_signer(typed, signing.signature_parse(signature))
    except signing.BadSignature as exc:
        raise InvalidSignature(str(exc)) from None
    if signer != expected and not (also and signer == also):
        raise InvalidSignature("this signature was not made by your registered key over these terms")
    return signature


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
    signature: str | None = None,
    salt: str | None = None,
    commitment_salt: str | None = None,
) -> Grant:
    """Store a patient-signed grant pending and queue it for the chain, in one transaction.

    With `signature` (made in her browser over grant_typed_data of the draft with these salts), the signature
    must recover her registered address before anything is stored or queued. Without it, the server signs
    only for a patient whose key it still holds (old records, the demo); for one holding her own key,
    SignatureRequired.
    """
    if signature is not None and not (salt and commitment_salt):
        raise InvalidGrant("a signed grant names the salts it was signed with")
    with transaction.atomic():
        draft = grant_draft(
            patient=patient,
            by=by,
            grantee=grantee,
            resource_types=resource_types,
            actions=actions,
            purpose=purpose,
            not_before=not_before,
            not_after=not_after,
            categories=categories,
            salt=salt,
            commitment_salt=commitment_salt,
        )
        typed = grant_typed_data(draft)
        # The contract records a grant only from the key registered for her account on chain.
        patient_key_on_chain_ensure(patient=patient)
        if signature is None:
            private_key = _server_key(patient)
            chain_id, contract_address = signing_domain()
            signed = signing.grant_sign(
                chain_grant(draft), private_key=private_key, chain_id=chain_id, verifying_contract=contract_address
            )
            signature = "0x" + signed.to_bytes().hex()
        draft.signature = _verify(typed, signature, draft.patient_address)
        draft.full_clean(exclude=["patient", "grantee"])
        if Grant.objects.filter(pk=draft.id).exists():
            raise InvalidGrant("this grant is recorded already")
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


def grant_revoke(*, grant: Grant, by: User, signature: str | None = None) -> Grant:
    """Revoke now in the database (the next request is denied), then on chain through the outbox.

    `signature`: the patient's browser signature over revoke_typed_data(grant); without it the server signs
    only for a patient whose key it still holds.
    """
    with transaction.atomic():
        # Locks the grant row: a relay confirming the grant at the same moment must not
        # overwrite the revocation with "recorded".
        locked = Grant.objects.select_for_update().select_related("patient").get(pk=grant.pk)
        if by.pk != locked.patient.user_id:
            raise ConsentDenied("only the patient can revoke their grant")
        return _revoke_locked(locked, actor=_actor(by), signature=signature)


def _revoke_locked(locked: Grant, *, actor: str, signature: str | None = None) -> Grant:
    """Verify (or, with a server-held key, make) the revocation's signature and record it, in the caller's
    transaction, on a grant the caller holds locked."""
    if locked.status == GrantStatus.REVOKED:
        return locked
    typed = revoke_typed_data(locked)
    if signature is None:
        private_key = _server_key(locked.patient)
        chain_id, contract_address = signing_domain()
        signed = signing.revoke_sign(
            bytes.fromhex(locked.id[2:]),
            private_key=private_key,
            chain_id=chain_id,
            verifying_contract=contract_address,
        )
        signature = "0x" + signed.to_bytes().hex()
    # The grant's own signer, or the key registered today (a rotation or a reset does not strand her grants):
    # the contract accepts exactly these two.
    signature = _verify(typed, signature, locked.patient_address, also=_current_address(locked.patient))
    was_on_chain = locked.status == GrantStatus.RECORDED
    locked.status = GrantStatus.REVOKED
    locked.revoked_at = timezone.now()
    locked.revocation_signature = signature
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


def _unrevoked(patient: Patient) -> QuerySet[Grant]:
    """The grants erasure must revoke first: every one not revoked or refused by the chain, expired ones too."""
    return (
        Grant.objects.select_related("patient")
        .filter(patient=patient, status__in=[GrantStatus.PENDING, GrantStatus.RECORDED])
        .order_by("created_at", "id")
    )


def erasure_revocations(*, patient: Patient) -> list[tuple[Grant, dict[str, object]]]:
    """What a patient holding her own key signs on the erase page: each grant erasure revokes, with its typed data."""
    return [(grant, revoke_typed_data(grant)) for grant in _unrevoked(patient)]


# What the layers above consent keep about a patient (diagnostic jobs, research participation ...)
# is scrubbed by steps they register here at start-up (AppConfig.ready), run inside the erasure's
# transaction after the key is gone: consent cannot import them, and erasure stays one service.
ERASURE_STEPS: list[Callable[[Patient], None]] = []


def erasure_step_register(step: Callable[[Patient], None]) -> None:
    """Add a step that erasure runs for every erased record (idempotent per function)."""
    if step not in ERASURE_STEPS:
        ERASURE_STEPS.append(step)


def patient_record_erase(
    *, patient: Patient, actor: str, revocation_signatures: Mapping[str, str] | None = None
) -> Patient:
    """Erase a record, in the one order there is: end its sharing, then destroy its key, then its account's name.

    Every live grant is revoked first, signed with the patient's key while that key still
    exists (after the shred nobody could ever sign the revocations): by her browser, in
    `revocation_signatures` (grant id -> signature), or by the server-held key where the
    operator still holds it; a missing one refuses the whole erasure. And every grant's scope
    and commitment salt are cleared. Then the key is
    destroyed (records.services.patient_erase), the account is closed and its name and
    e-mail removed. One transaction: either all of it happened or none of it did. Used by
    the portal's erase page and the erase_patient command alike.
    """
    with transaction.atomic():
        # Locked so a grant issued while this runs cannot escape the revocations.
        Patient.objects.select_for_update().filter(pk=patient.pk).first()
        live = _unrevoked(patient).select_for_update()
        signatures = revocation_signatures or {}
        for grant in live:
            # A patient holding her own key signed these on the erase page; a server-held key signs here.
            _revoke_locked(grant, actor=actor, signature=signatures.get(grant.id))
        # What she shared, with whom and for what is about her: the scopes go, and with the commitment
        # salt the on-chain commitments can no longer be tied to any scope. The chain keeps the commitment.
        Grant.objects.filter(patient=patient).update(resource_types=[], categories=[], actions=[], commitment_salt="")
        erased = patient_erase(patient=patient, actor=actor)
        for step in ERASURE_STEPS:
            step(erased)
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


def grant_chain_lost(*, grant_id: str) -> None:
    """Outbox handler: the block that recorded the grant is gone from the chain (a node lost it, a reorg).

    Back to pending until the outbox sends it again and it confirms: no read is allowed on a grant the
    chain does not hold. A revoked grant stays revoked (the database enforces a revocation at once).
    """
    Grant.objects.filter(pk=grant_id, status=GrantStatus.RECORDED).update(status=GrantStatus.PENDING)
    Grant.objects.filter(pk=grant_id).update(tx_hash="", block_number=None)
    logger.warning("grant lost from the chain id=%s; waiting for it to be recorded again", grant_id[:18])


def revocation_chain_lost(*, grant_id: str) -> None:
    """Outbox handler: the block that recorded the revocation is gone; it stays revoked here and is sent again."""
    Grant.objects.filter(pk=grant_id).update(revocation_tx_hash="", revocation_block_number=None)
    logger.warning("revocation lost from the chain id=%s; sending it again", grant_id[:18])


def revocation_confirmed(*, grant_id: str, tx_hash: str, block_number: int | None) -> None:
    """Outbox handler: the revocation is on chain."""
    Grant.objects.filter(pk=grant_id).update(revocation_tx_hash=tx_hash, revocation_block_number=block_number)
