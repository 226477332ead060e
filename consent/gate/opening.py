"""Decryption of stored versions, and the access-log entry an integrity failure leaves behind."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from audit.models import Outcome
from audit.services import LogEvent, access_log_commit
from consent.gate.caller import Caller
from healthledger.errors import IntegrityFailure
from records import decrypt
from records.models import Patient
from records.selectors import (
    StoredVersion,
)

logger = logging.getLogger(__name__)


def _open(stored: StoredVersion, patient: Patient, caller: Caller | None = None) -> bytes:
    """Decrypt one stored version; on an integrity failure (flipped byte, moved ciphertext, rolled-back version)
    write a `records.integrity` entry to the patient's access log, in its own transaction, and raise."""
    try:
        return decrypt.stored_version_decrypt(stored)
    except IntegrityFailure:
        logger.error("integrity failure reading a stored version of patient %s", patient.pk)
        _integrity_entry(caller, patient, (stored.reference,))
        raise


def _integrity_entry(caller: Caller | None, patient: Patient, references: Sequence[str]) -> None:
    # Committed on its own: the read that found it may roll back or answer an error, the finding stays, and the
    # patient sees it in their log. Outcome deny: nothing of these versions was served.
    access_log_commit(
        event=LogEvent(
            actor=caller.ref if caller is not None else "system:integrity",
            action="records.integrity",
            outcome=Outcome.DENY,
            patient_ref=patient.pk,
            purpose=caller.purpose if caller is not None else "",
            job_id=caller.job_id if caller is not None else "",
            resource_ids=tuple(references),
        )
    )


def _open_each(stored: Sequence[StoredVersion], patient: Patient) -> tuple[list[StoredVersion], list[bytes], list[str]]:
    """Decrypt several versions; one that fails its integrity check fails alone.

    Returns the versions opened, their bodies, and the references that failed; the caller logs those
    (`_integrity_entry`) where the entry cannot be rolled back with a failing request.
    """
    each = decrypt.stored_versions_decrypt_each(stored)
    if None not in each:  # every one opened (the rule): nothing to sort out
        return list(stored), each, []  # type: ignore[return-value]
    opened: list[StoredVersion] = []
    bodies: list[bytes] = []
    failed: list[str] = []
    for item, body in zip(stored, each, strict=True):
        if body is None:
            failed.append(item.reference)
            continue
        opened.append(item)
        bodies.append(body)
    if failed:
        logger.error("integrity failure on %d stored version(s) of patient %s", len(failed), patient.pk)
    return opened, bodies, failed


def _integrity_raise(caller: Caller, patient: Patient, failed: Sequence[str]) -> IntegrityFailure:
    """Outside the read's transaction: the finding is committed, then the read fails as a whole."""
    _integrity_entry(caller, patient, failed)
    return IntegrityFailure(f"{len(failed)} stored version(s) failed their integrity check")
