"""Recovery for a patient who lost both her device and her recovery phrase: an operator-assisted key reset that
the chain makes public and slow.

1. She signs in, creates a new key in her browser, and it signs KeyRegistration(account, new key, previous=the
   lost key): key_reset_request. Nothing changes yet; her record stays readable to her, her old grants stay in
   force, and nothing new can be signed in her name.
2. The operator checks her identity out of band and approves (manage.py key_reset approve): the request goes on
   chain (ConsentRegistry.requestKeyReset, operator only) and she is told at once, by a notice and an e-mail
   that cannot be turned off. The chain holds it for KEY_RESET_DELAY (7 days), for anyone to see.
3. Meanwhile her registered key, if it was not lost after all (or if this request is not hers), cancels it
   by signing KeyResetCancel(account, new key): key_reset_cancel.
4. After the delay, manage.py key_reset complete (or beat) sends completeKeyReset; once it is confirmed the
   new key is hers, recorded on chain as a reset (KeyRegistered(..., reset=true)), never as a rotation.

Grants the lost key signed survive and the new key can revoke them. The operator alone can neither shorten the
delay nor hide the request: it is an event on chain, and the patient is notified.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.services import notification_create
from audit.services import LogEvent, access_log_append
from consent.key_chain import account_of, registration_typed_data
from consent.models import KeyKind, KeyRegistration, KeyReset, KeyResetStatus
from healthledger.errors import ConsentDenied, HealthLedgerError
from ledger import signing
from ledger.models import OutboxKind
from ledger.outbox import outbox_enqueue
from ledger.selectors import signing_domain
from records.models import Patient
from records.services import patient_wallet_register

logger = logging.getLogger(__name__)

KEY_RESET_DELAY = timedelta(days=7)  # ConsentRegistry.KEY_RESET_DELAY
NOTIFICATION_KIND = "consent.key.reset"


class InvalidKeyReset(HealthLedgerError):
    """A key reset that cannot be asked for, approved, cancelled or completed as it stands."""


def _log(*, actor: str, action: str, patient: Patient) -> None:
    access_log_append(event=LogEvent(actor=actor, action=action, outcome="permit", patient_ref=patient.pk))


def _signed_by(typed: dict[str, object], signature: str, expected: str) -> str:
    try:
        signer = signing.recover_signer(typed, signing.signature_parse(signature))
    except signing.BadSignature as exc:
        raise InvalidKeyReset(str(exc)) from None
    if signer != expected:
        raise InvalidKeyReset("this is not signed by the key it should be")
    return signature


def key_reset_open(*, patient: Patient) -> KeyReset | None:
    """The reset asked for or waiting on chain, if any (at most one per record)."""
    return (
        KeyReset.objects.filter(patient=patient, status__in=[KeyResetStatus.REQUESTED, KeyResetStatus.APPROVED])
        .order_by("-id")
        .first()
    )


def key_reset_request(*, patient: Patient, by: User, address: str, signature: str) -> KeyReset:
    """Step 1: the patient, signed in, asks to replace a key she lost, with a new key that signs the request."""
    if by.pk != patient.user_id or patient.is_erased:
        raise ConsentDenied("only the patient asks to reset the key of her own, unerased record")
    try:
        address = signing.address_checked(address)
    except signing.BadSignature:
        raise InvalidKeyReset("the new key's address is not an Ethereum address") from None
    with transaction.atomic():
        # Locks the record: a rotation or a second request at the same moment must not see the same key.
        locked = Patient.objects.select_for_update().get(pk=patient.pk)
        current = locked.wallet_address
        if locked.wallet_ciphertext is not None or not current:
            raise InvalidKeyReset("a reset replaces a key you held yourself; there is none to replace")
        if address == current:
            raise InvalidKeyReset("this key is registered already")
        if key_reset_open(patient=locked) is not None:
            raise InvalidKeyReset("a reset of your key is under way already")
        typed = registration_typed_data(patient=locked, key=address, previous=current)
        reset = KeyReset.objects.create(
            patient=locked,
            address=address,
            previous_address=current,
            signature=_signed_by(typed, signature, address),
        )
        _log(actor=f"user:{by.pk}", action="consent.key.reset.request", patient=locked)
    return reset


def key_reset_approve(*, reset: KeyReset, actor: str) -> KeyReset:
    """Step 2, after the operator checked who asked: the request goes on chain, and the patient is told."""
    with transaction.atomic():
        locked = KeyReset.objects.select_for_update().select_related("patient").get(pk=reset.pk)
        if locked.status != KeyResetStatus.REQUESTED:
            raise InvalidKeyReset(f"this reset is {locked.status}, not waiting for approval")
        patient = locked.patient
        if patient.wallet_address != locked.previous_address or patient.is_erased:
            raise InvalidKeyReset("the key this reset replaces is no longer the registered one")
        change = signing.KeyChange(
            account=account_of(patient),
            key=locked.address,
            previous=locked.previous_address,
            signature=signing.signature_parse(locked.signature),
        )
        outbox_enqueue(kind=OutboxKind.KEY_RESET, ref=locked.address, payload=change.as_payload())
        locked.status = KeyResetStatus.APPROVED
        locked.approved_by = actor[:100]
        locked.save(update_fields=["status", "approved_by"])
        _log(actor=actor, action="consent.key.reset.approve", patient=patient)
        if patient.user_id is not None:
            notification_create(
                user_id=patient.user_id,
                kind=NOTIFICATION_KIND,
                text=(
                    "The operator approved replacing your signing key with a new one. It takes effect in 7 days."
                    " If you did not ask for this, open Your key and cancel it with your current key."
                ),
                link=reverse("portal:keys"),
            )
    return locked


def key_reset_cancel_typed_data(*, reset: KeyReset) -> dict[str, object]:
    """What her registered key signs to refuse this reset."""
    chain_id, contract = signing_domain()
    return signing.key_reset_cancel_typed_data(
        account=account_of(reset.patient), key=reset.address, chain_id=chain_id, verifying_contract=contract
    )


def key_reset_cancel(*, patient: Patient, by: User, signature: str) -> KeyReset:
    """Step 3: her registered key refuses the reset (on chain too, once it was approved)."""
    if by.pk != patient.user_id:
        raise ConsentDenied("only the patient cancels a reset of her key")
    with transaction.atomic():
        open_reset = key_reset_open(patient=patient)
        if open_reset is None:
            raise InvalidKeyReset("no reset of your key is under way")
        locked = KeyReset.objects.select_for_update().select_related("patient").get(pk=open_reset.pk)
        _signed_by(key_reset_cancel_typed_data(reset=locked), signature, locked.previous_address)
        if locked.status == KeyResetStatus.APPROVED:
            outbox_enqueue(
                kind=OutboxKind.KEY_RESET_CANCEL,
                ref=locked.address,
                payload={"account": "0x" + account_of(patient).hex(), "signature": signature},
            )
        locked.status = KeyResetStatus.CANCELLED
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "finished_at"])
        _log(actor=f"user:{by.pk}", action="consent.key.reset.cancel", patient=patient)
    return locked


def key_reset_on_chain(*, address: str) -> None:
    """Outbox: the request is on chain; its delay runs from now (never earlier than the chain's own)."""
    KeyReset.objects.filter(address=address, status=KeyResetStatus.APPROVED, ready_at__isnull=True).update(
        ready_at=timezone.now() + KEY_RESET_DELAY
    )


def key_resets_complete_due() -> list[KeyReset]:
    """Step 4: queue completeKeyReset for every approved reset whose delay has passed."""
    queued = []
    for reset in KeyReset.objects.filter(status=KeyResetStatus.APPROVED, ready_at__lte=timezone.now()):
        with transaction.atomic():
            outbox_enqueue(
                kind=OutboxKind.KEY_RESET_DONE,
                ref=reset.address,
                payload={"account": "0x" + account_of(reset.patient).hex()},
            )
        queued.append(reset)
    return queued


def key_reset_completed(*, address: str) -> None:
    """Outbox: completeKeyReset is confirmed; the new key is hers from now on (a KeyRegistration of kind reset)."""
    reset = KeyReset.objects.select_for_update().select_related("patient").filter(address=address).first()
    if reset is None or reset.status != KeyResetStatus.APPROVED:
        return
    patient = reset.patient
    patient_wallet_register(patient=patient, address=reset.address)
    KeyRegistration.objects.create(
        patient=patient,
        kind=KeyKind.RESET,
        address=reset.address,
        previous_address=reset.previous_address,
        signature=reset.signature,
    )
    reset.status = KeyResetStatus.COMPLETED
    reset.finished_at = timezone.now()
    reset.save(update_fields=["status", "finished_at"])
    _log(actor="system:chain", action=f"consent.key.{KeyKind.RESET}", patient=patient)
    logger.info("key reset completed for reset id=%s", reset.pk)


def key_reset_chain_refused(*, address: str) -> None:
    """Outbox: the chain refused the request or its completion (cancelled there by her key, or replaced by a
    rotation): the reset is over, and the registered key stays."""
    KeyReset.objects.filter(address=address, status=KeyResetStatus.APPROVED).update(
        status=KeyResetStatus.CANCELLED, finished_at=timezone.now()
    )
