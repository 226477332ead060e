"""Issuing and revoking grants: stored, queued for the chain and logged, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.services import LogEvent, access_log_append
from consent.key_chain import patient_key_on_chain_ensure
from consent.models import Grant, GrantStatus
from consent.services.signatures import _current_address, _signature_required, _verify
from consent.services.terms import (
    InvalidGrant,
    _chain_payload,
    grant_draft,
    grant_typed_data,
    revoke_typed_data,
)
from healthledger.errors import ConsentDenied
from ledger.outbox import outbox_enqueue
from records.models import Patient

logger = logging.getLogger(__name__)


def _actor(user: User) -> str:
    return f"user:{user.pk}"


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
    signature: str | None,
    categories: Sequence[str] = (),
    salt: str | None = None,
    commitment_salt: str | None = None,
) -> Grant:
    """Store a patient-signed grant pending and queue it for the chain, in one transaction.

    `signature` (made with her key, in her browser, over grant_typed_data of the draft with these salts) is
    required: without one, SignatureRequired; and it must recover her registered address. Either way before
    anything is stored or queued. The server never signs a grant.
    """
    signature = _signature_required(patient, signature)
    if not (salt and commitment_salt):
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


def grant_revoke(*, grant: Grant, by: User, signature: str | None) -> Grant:
    """Revoke now in the database (the next request is denied), then on chain through the outbox.

    `signature`: the patient's signature over revoke_typed_data(grant), made with her key; required
    (SignatureRequired before anything changes otherwise).
    """
    with transaction.atomic():
        # Locks the grant row: a relay confirming the grant at the same moment must not
        # overwrite the revocation with "recorded".
        locked = Grant.objects.select_for_update().select_related("patient").get(pk=grant.pk)
        if by.pk != locked.patient.user_id:
            raise ConsentDenied("only the patient can revoke their grant")
        return _revoke_locked(locked, actor=_actor(by), signature=signature)


def _revoke_locked(locked: Grant, *, actor: str, signature: str | None) -> Grant:
    """Verify the patient's signature over the revocation and record it, in the caller's transaction, on a grant
    the caller holds locked; SignatureRequired without one."""
    if locked.status == GrantStatus.REVOKED:
        return locked
    signature = _signature_required(locked.patient, signature)
    typed = revoke_typed_data(locked)
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
