"""Sealing what the access log says about a patient in words: search queries, break-glass reasons.

The log's integrity covers the sealed text, so erasure (which destroys the sealing key with
the patient's key) leaves every entry verifiable and none of its words readable. Opening
is records.decrypt's job, for the gate alone.
"""

from __future__ import annotations

import base64
import uuid

from records import crypto, keys
from records.envelope import SEALED_TEXT_PREFIX, log_text_aad

ERASED_TEXT = "[erased]"


def log_text_seal(*, patient_id: uuid.UUID | None, text: str) -> str:
    """`text` sealed for the patient's log ("" stays ""); once the patient is erased, only a marker is kept."""
    if not text or patient_id is None:
        return text
    key = keys.patient_log_key(patient_id=patient_id)
    if key is None:
        return ERASED_TEXT
    sealed = crypto.aead_seal(key=key, plaintext=text.encode("utf-8"), aad=log_text_aad(patient_id=patient_id))
    return SEALED_TEXT_PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii")
