"""Access-log text: a sealed query or reason opened for the patient's log and the steward."""

from __future__ import annotations

import uuid

from records import decrypt


def access_log_text(*, patient_id: uuid.UUID | None, text: str) -> str:
    """An access-log query or reason in words, for the patient's log and the steward; "[erased]" after erasure."""
    return decrypt.log_text_open(patient_id=patient_id, text=text)
