"""A grant's or revocation's signature: one the patient made with her own key, required and checked; the server
signs nothing."""

from __future__ import annotations

from healthledger.errors import ConsentDenied, KeyDestroyed
from ledger import signing
from records.models import Patient


class SignatureRequired(ConsentDenied):
    """The patient holds her own key: only a signature she made in her browser can grant or revoke."""


class InvalidSignature(ConsentDenied):
    """A browser signature that does not recover the patient's registered address from the typed data."""


def _signature_required(patient: Patient, signature: str | None) -> str:
    """The signature she sent; SignatureRequired when there is none, before anything is stored or queued.

    A legacy record whose key the operator still holds signs nothing until she has taken it (consent.keys):
    a key the operator has a copy of cannot prove that she, not the operator, decided.
    """
    fresh = Patient.objects.only("id", "wallet_ciphertext", "erased_at").get(pk=patient.pk)
    if fresh.is_erased:
        raise KeyDestroyed("this record was erased: nothing can be signed for it any more")
    if fresh.wallet_ciphertext is not None:
        raise SignatureRequired(
            "take your key first: the operator still holds a copy of it, so nothing can be signed in your name"
        )
    if not signature:
        raise SignatureRequired("sign with your own key: nothing is granted or revoked without your signature")
    return signature


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
