"""Bulk export files at rest: each segment (one patient's chunk of one type) sealed under that patient's key.

An export file holds PHI for as long as it lives (an hour by default), so it is stored like the record
itself: AES-256-GCM under a key derived from the patient's own key and the export's id. Erasure
destroys the patient's key, and with it every export segment of theirs not yet deleted: the download
leaves such a segment out. The associated data binds export, patient, type and position, so a
segment moved to another export, file or place fails to open.
"""

from __future__ import annotations

import uuid

from healthledger.errors import KeyDestroyed
from records import crypto, keys
from records.models import Patient


def _segment_key(patient: Patient, export_id: uuid.UUID) -> bytes:
    if patient.wrapped_key is None:
        raise KeyDestroyed("this patient's record was erased; its data can never be decrypted again")
    patient_key = keys.patient_key_unwrap(
        patient_id=patient.pk, wrapped=bytes(patient.wrapped_key), master_key_id=patient.master_key_id
    )
    return crypto.subkey_derive(key=patient_key, purpose=b"healthledger/bulk-export|" + export_id.bytes)


def _aad(export_id: uuid.UUID, patient_id: uuid.UUID, resource_type: str, seq: int) -> bytes:
    return f"healthledger/bulk-export|{export_id}|{patient_id}|{resource_type}|{seq}".encode("ascii")


class SegmentSealer:
    """Seals one patient's segments of one export. Made before the patient's data is read, so that a record
    erased meanwhile fails here (KeyDestroyed), before a read, never between a read and its storage."""

    def __init__(self, *, export_id: uuid.UUID, patient: Patient) -> None:
        self._export_id = export_id
        self._patient_id = patient.pk
        self._key = _segment_key(patient, export_id)

    def seal(self, *, resource_type: str, seq: int, plaintext: bytes) -> bytes:
        aad = _aad(self._export_id, self._patient_id, resource_type, seq)
        return crypto.aead_seal(key=self._key, plaintext=plaintext, aad=aad)


def export_segment_open(
    *, export_id: uuid.UUID, patient: Patient, resource_type: str, seq: int, sealed: bytes
) -> bytes:
    """Open one sealed segment for its requester's download; KeyDestroyed after erasure, IntegrityFailure if altered.

    What it holds was read through the gate, and logged, when the export ran: this only hands the
    requesting client what that logged read produced.
    """
    key = _segment_key(patient, export_id)
    return crypto.aead_open(key=key, sealed=bytes(sealed), aad=_aad(export_id, patient.pk, resource_type, seq))
