"""The patient erases her own record, through consent.services.patient_record_erase."""

from __future__ import annotations

from collections.abc import Mapping

from accounts.models import User
from consent.services import patient_record_erase
from healthledger.errors import ConsentDenied
from records.models import Patient


def record_erase(*, patient: Patient, by: User, revocation_signatures: Mapping[str, str] | None = None) -> Patient:
    """The patient erases her own record: consent.services.patient_record_erase, in its one order.

    `revocation_signatures`: grant id -> her browser's signature revoking it, when she holds her own key.
    """
    if patient.user_id != by.pk:
        raise ConsentDenied("only the patient can erase her record")
    return patient_record_erase(patient=patient, actor=f"user:{by.pk}", revocation_signatures=revocation_signatures)
