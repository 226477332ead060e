"""Whose signature a grant or revocation carries: the patient's browser signature, checked, or the server-held key."""

from __future__ import annotations

from consent import gate
from healthledger.errors import ConsentDenied
from ledger import signing
from records.models import Patient


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
