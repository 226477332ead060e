"""Who holds a patient's signing key, and the patient-signed registrations that move it into her hands.

Three states, read from the record: "browser" (she registered a key she made or took; the server holds only
its address), "none" (a new record: nothing registered until she creates her key in her browser), and "server"
(a legacy record from before self-custody: the operator still holds a sealed copy, which it never signs with;
she can only take it, and until she does nothing can be signed in her name).
Every change of key is signed by the key being registered, and a rotation
also by the key it replaces, so the operator cannot swap in an address of its own choosing. Each registration
goes on chain (consent.key_chain) in the transaction that stores it; the contract then holds the same rule.
"""

from __future__ import annotations

from typing import Literal

from django.db import transaction

from accounts.models import User
from audit.services import LogEvent, access_log_append
from consent.gate.patient_key import patient_signing_key
from consent.key_chain import key_registration_enqueue, registration_typed_data
from consent.models import KeyKind, KeyRegistration
from healthledger.errors import ConsentDenied, HealthLedgerError
from ledger import signing
from records.models import Patient
from records.services import patient_wallet_drop, patient_wallet_register

__all__ = [
    "InvalidKeyRegistration",
    "patient_key_custody",
    "patient_key_owner_check",
    "patient_key_register",
    "patient_key_release",
    "registration_typed_data",
]

Custody = Literal["server", "browser", "none"]


class InvalidKeyRegistration(HealthLedgerError):
    """A key registration whose signature, address or moment does not hold."""


def patient_key_custody(patient: Patient) -> Custody:
    """Who holds the key today: the operator ("server"), the patient ("browser"), or nobody yet ("none")."""
    fresh = Patient.objects.only("wallet_address", "wallet_ciphertext", "erased_at").get(pk=patient.pk)
    if fresh.wallet_ciphertext is not None:
        return "server"
    return "browser" if fresh.wallet_address else "none"


def patient_key_owner_check(patient: Patient, by: User) -> None:
    """Only the record's own patient, while it is not erased, registers, takes or backs up its key."""
    if by.pk != patient.user_id or patient.is_erased:
        raise ConsentDenied("only the patient manages the key of her own, unerased record")


def _checked(typed: dict[str, object], signature: str, expected: str) -> None:
    try:
        signer = signing.recover_signer(typed, signing.signature_parse(signature))
    except signing.BadSignature as exc:
        raise InvalidKeyRegistration(str(exc)) from None
    if signer != expected:
        raise InvalidKeyRegistration("the registration is not signed by the key it names")


def patient_key_register(
    *, patient: Patient, by: User, address: str, signature: str, previous_signature: str = ""
) -> KeyRegistration:
    """Register the key the patient holds in her browser, proven by its signature over the registration.

    - no key yet: the new key alone signs ("created");
    - the server holds a copy of this very key: her signature proves the browser has it, and the server's
      copy is destroyed in the same transaction ("taken");
    - she holds another key already: the old key co-signs the same registration ("rotated"). Grants signed
      by the old key stay in force on chain; the old key or the new one may revoke them, and only the new
      one can sign a new grant.

    The registration is queued for the chain's key registry in the same transaction.
    """
    patient_key_owner_check(patient, by)
    try:
        address = signing.address_checked(address)
    except signing.BadSignature:
        raise InvalidKeyRegistration("the key's address is not an Ethereum address") from None
    with transaction.atomic():
        # Locks the record: two registrations at once must not both see the same "previous".
        locked = Patient.objects.select_for_update().get(pk=patient.pk)
        custody = patient_key_custody(locked)
        current = locked.wallet_address
        if custody == "server" and address != current:
            raise InvalidKeyRegistration("take the key the operator holds first; then rotate it if you wish")
        if custody == "browser" and address == current:
            raise InvalidKeyRegistration("this key is registered already")
        previous = current if custody == "browser" else signing.ZERO_ADDRESS
        typed = registration_typed_data(patient=locked, key=address, previous=previous)
        _checked(typed, signature, address)
        if custody == "browser":
            _checked(typed, previous_signature, previous)
        kind = {"none": KeyKind.CREATED, "server": KeyKind.TAKEN, "browser": KeyKind.ROTATED}[custody]
        if custody == "server":
            patient_wallet_drop(patient=locked, address=address)
        else:
            patient_wallet_register(patient=locked, address=address)
        registration = KeyRegistration.objects.create(
            patient=locked,
            kind=kind,
            address=address,
            previous_address="" if previous == signing.ZERO_ADDRESS else previous,
            signature=signature,
            previous_signature=previous_signature if custody == "browser" else "",
        )
        key_registration_enqueue(registration=registration)
        access_log_append(
            event=LogEvent(actor=f"user:{by.pk}", action=f"consent.key.{kind}", outcome="permit", patient_ref=locked.pk)
        )
    return registration


def patient_key_release(*, patient: Patient, by: User) -> bytes:
    """Hand the server-held key to the patient ("take your key", step one), logged; the copy stays until she
    registers it from her browser (patient_key_register), which destroys it. Nothing else ever returns it."""
    patient_key_owner_check(patient, by)
    if patient_key_custody(patient) != "server":
        raise InvalidKeyRegistration("the operator holds no key of yours")
    with transaction.atomic():
        private_key = patient_signing_key(patient=patient)
        access_log_append(
            event=LogEvent(
                actor=f"user:{by.pk}", action="consent.key.release", outcome="permit", patient_ref=patient.pk
            )
        )
    return private_key
