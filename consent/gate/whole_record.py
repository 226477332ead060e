"""Whole-record reads: the patient's own export, and the operator's blind-index rebuild."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from django.db import transaction

from audit.models import Outcome
from audit.services import LogEvent, access_log_insert
from consent.gate.caller import Caller
from consent.gate.decisions import _decide, _deny, _event
from consent.gate.opening import _integrity_entry, _open_each
from consent.pdp import (
    Decision,
)
from consent.purposes import Action, Purpose
from healthledger.errors import KeyDestroyed
from records import decrypt
from records.models import Patient
from records.reindex import index_tokens_rebuild
from records.selectors import (
    stored_versions_current,
)


def record_export(*, caller: Caller, patient: Patient) -> bytes:
    """The current version of every resource of the record as one FHIR collection Bundle, logged as one entry.

    Only the patient exports a whole record: a grant never covers "everything, in one go".
    """
    decision = _decide(caller, patient, Action.READ, ["*"])
    if decision.basis != "own-record":
        decision = Decision(permit=False, basis=decision.basis if not decision.permit else "export-own-record-only")
    if not decision.permit:
        raise _deny(caller, patient, "records.export", decision)
    with transaction.atomic():
        if Patient.objects.filter(pk=patient.pk, erased_at__isnull=False).exists():
            raise KeyDestroyed("this patient's record was erased; its data can never be decrypted again")
        # One version that fails its integrity check is left out, logged, and named in the Bundle.
        stored, bodies, failed = _open_each(stored_versions_current(patient=patient), patient)
        if failed:
            _integrity_entry(caller, patient, failed)
        access_log_insert(
            event=_event(caller, patient, "records.export", decision, resource_ids=[s.reference for s in stored])
        )
    # Built from the stored bytes without parsing them; type and id are FHIR ids, safe inside a JSON string.
    timestamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    parts = [
        b'{"fullUrl":"' + f"{item.resource_type}/{item.fhir_id}".encode("ascii") + b'","resource":' + body + b"}"
        for item, body in zip(stored, bodies, strict=True)
    ]
    if failed:
        # The export says what it left out, in the Bundle itself: an OperationOutcome entry.
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "warning",
                    "code": "exception",
                    "diagnostics": f"{len(failed)} stored version(s) failed their integrity check and were "
                    f"left out: {', '.join(failed)}",
                }
            ],
        }
        parts.append(b'{"resource":' + json.dumps(outcome, separators=(",", ":")).encode() + b"}")
    entries = b",".join(parts)
    head = f'{{"resourceType":"Bundle","type":"collection","timestamp":"{timestamp}","entry":['.encode("ascii")
    return head + entries + b"]}"


def record_index_rebuild(*, patient: Patient) -> int:
    """Rebuild a record's blind index from its current versions (an operator's maintenance); the token count.

    The plaintext never leaves this function: it goes from decryption to records.reindex and is
    dropped; the access log says the record was read to be reindexed, by whom ("system:reindex").
    """
    with transaction.atomic():
        locked = Patient.objects.select_for_update().filter(pk=patient.pk, erased_at__isnull=True).first()
        if locked is None:  # erased: nothing to decrypt, and its index was deleted with the key
            return 0
        stored = stored_versions_current(patient=locked)
        bodies = decrypt.stored_versions_decrypt(stored)
        count = index_tokens_rebuild(patient=locked, stored=stored, bodies=bodies)
        access_log_insert(
            event=LogEvent(
                actor="system:reindex",
                action="records.reindex",
                outcome=Outcome.PERMIT,
                patient_ref=locked.pk,
                purpose=Purpose.HOPERAT.value,
                resource_ids=[item.reference for item in stored],
            )
        )
    return count
