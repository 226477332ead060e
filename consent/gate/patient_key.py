"""The patient's chain signing key, opened for consent's own signing services."""

from __future__ import annotations

from records import decrypt
from records.models import Patient


def patient_signing_key(*, patient: Patient) -> bytes:
    """The patient's chain signing key, for consent services to sign the patient's own grants and revocations.

    Not patient data and not logged as a read: what it signs is logged by the service that signs.
    """
    fresh = Patient.objects.only("id", "wrapped_key", "master_key_id", "wallet_ciphertext").get(pk=patient.pk)
    return decrypt.patient_signing_key(fresh)
