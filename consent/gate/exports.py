"""Bulk export files: sealing a segment as the export reads it, and opening one at download, decided again.

The only path to records.bulk_files (an import-linter contract says so). An export's files were read
through the gate when it ran; at download each patient's segments are decided afresh, against the
grants of that moment: a revoked or expired grant, or one that no longer covers the type, leaves that
patient's lines out of the file (a deny entry in their access log says so), and the other patients'
lines are served. A patient served gets one permit entry per file before their first byte leaves.
The manifest asks the same question of every patient in the export (export_patients_covered), so it
lists and counts only what a download would serve.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import orjson
from django.utils import timezone

from audit.services import LogEvent, access_log_commit
from consent.categories import categories_for
from consent.gate.caller import Caller
from consent.gate.decisions import _decide, _event, _outputs_only
from consent.gate.opening import _integrity_entry
from consent.pdp import Decision, GrantRow, live_grants_of_patients
from consent.purposes import Action, Purpose
from healthledger.errors import IntegrityFailure, KeyDestroyed
from records import bulk_files
from records.models import Patient
from records.selectors import SearchCriteria, resource_matching

logger = logging.getLogger(__name__)

DOWNLOAD_ACTION = "records.export.download"
ExportSegmentSealer = bulk_files.SegmentSealer


def export_segment_sealer(*, export_id: uuid.UUID, patient: Patient) -> bulk_files.SegmentSealer:
    """The sealer of one patient's segments of an export, made before that patient's data is read.

    Raises KeyDestroyed for an erased record, before anything of it is read or logged.
    """
    return bulk_files.SegmentSealer(export_id=export_id, patient=patient)


@dataclass(frozen=True)
class SealedSegment:
    """Where one stored segment of an export file sits: its row, its patient, its position."""

    key: int
    patient_id: uuid.UUID
    seq: int


@dataclass(frozen=True)
class ExportFile:
    """One ndjson file of one export, as its requester downloads it."""

    caller: Caller  # the requester, with the export's purpose and launch context
    export_id: uuid.UUID
    resource_type: str


def _download_event(file: ExportFile, patient: Patient, decision: Decision) -> LogEvent:
    query = f"$export download {file.export_id} {file.resource_type}.ndjson"
    event = _event(file.caller, patient, DOWNLOAD_ACTION, decision, query=query)
    # Who downloads is the person (actor); which export is the job id.
    return replace(event, job_id=f"export:{file.export_id}")


def _unerased(patient_ids: Iterable[uuid.UUID]) -> list[Patient]:
    """The records still there: an erased one can be neither served nor counted."""
    return list(Patient.objects.filter(pk__in=set(patient_ids), erased_at__isnull=True))


def _file_decision(
    caller: Caller,
    patient: Patient,
    resource_type: str,
    *,
    at: datetime | None = None,
    grants: Sequence[GrantRow] | None = None,
) -> Decision:
    """May the requester still have this patient's lines of this type: the one rule of a download and its manifest."""
    return _decide(caller, patient, Action.READ, [resource_type], at=at, grants=grants)


def export_patients_covered(
    *, caller: Caller, patient_ids: Iterable[uuid.UUID], resource_types: Sequence[str]
) -> dict[str, frozenset[uuid.UUID]]:
    """Type -> the patients whose lines of that type a download would serve now (export_file_open's decision).

    One statement for the records, one for every grant; nothing is opened and nothing is logged: it
    decides, it does not read (each download logs its own decision, and what the export read was
    logged when it ran). What it cannot see without opening a segment is a grant narrowed to
    categories since the export: a download then serves only the lines it still covers.
    """
    if caller.purpose == Purpose.ETREAT:
        raise ValueError("break-glass opens one record at a time, never an export")
    patients = _unerased(patient_ids)
    now = timezone.now()
    grants: dict[uuid.UUID, list[GrantRow]] = {}
    if caller.actor is not None and patients:
        grants = live_grants_of_patients(
            grantee_id=caller.actor.pk, patient_ids=[p.pk for p in patients], purpose=caller.purpose, at=now
        )
    return {
        resource_type: frozenset(
            p.pk
            for p in patients
            if _file_decision(caller, p, resource_type, at=now, grants=grants.get(p.pk, [])).permit
        )
        for resource_type in resource_types
    }


def _lines_in_scope(file: ExportFile, patient: Patient, decision: Decision, body: bytes) -> bytes:
    """Under a grant that narrows the type (categories, a job's outputs), only lines it still covers."""
    narrowing = categories_for(decision.categories, file.resource_type)
    if not narrowing and not decision.output_grants:
        return body
    lines = [line for line in body.split(b"\n") if line]
    ids = {orjson.loads(line).get("id"): line for line in lines}
    criteria = SearchCriteria(ids=tuple(i for i in ids if isinstance(i, str)))
    if decision.output_grants:
        criteria = _outputs_only(decision, patient, file.resource_type, criteria)
    matching = resource_matching(
        patient=patient, resource_type=file.resource_type, criteria=criteria, categories_any=narrowing
    )
    covered = set(matching.values_list("fhir_id", flat=True))
    return b"".join(line + b"\n" for i, line in ids.items() if i in covered)


def _open(file: ExportFile, patient: Patient, segment: SealedSegment, sealed: bytes) -> bytes | None:
    try:
        return bulk_files.export_segment_open(
            export_id=file.export_id, patient=patient, resource_type=file.resource_type, seq=segment.seq, sealed=sealed
        )
    except KeyDestroyed:
        return None  # erased since the export ran: nothing of it can be served, nothing is logged as read
    except IntegrityFailure:
        logger.error("bulk export %s: a segment failed its integrity check", file.export_id)
        _integrity_entry(file.caller, patient, (f"{file.resource_type} segment {segment.seq}",))
        return None


def export_file_open(
    *, file: ExportFile, segments: Iterable[SealedSegment], load: Callable[[int], bytes | None]
) -> Iterator[bytes]:
    """A file's ndjson, one opened segment at a time, each patient decided again when their first segment comes.

    `segments` come in file order (a patient's segments of a type are contiguous); `load` returns a
    segment's sealed bytes, None once deleted (the export cancelled or expired), which ends the file.
    A patient denied now is left out, with a deny entry; a patient served gets a permit entry, committed
    before their first byte is yielded.
    """
    current: uuid.UUID | None = None
    patient: Patient | None = None
    decision = Decision(permit=False, basis="no-record")
    logged = False
    for segment in segments:
        if segment.patient_id != current:
            current, logged = segment.patient_id, False
            patient = next(iter(_unerased([segment.patient_id])), None)
            decision = Decision(permit=False, basis="erased")
            if patient is not None:
                decision = _file_decision(file.caller, patient, file.resource_type)
                if not decision.permit:
                    access_log_commit(event=_download_event(file, patient, decision))
                    logger.info("bulk download deny basis=%s", decision.basis)
        if patient is None or not decision.permit:
            continue
        sealed = load(segment.key)
        if sealed is None:
            return
        body = _open(file, patient, segment, sealed)
        if body is None:
            continue
        body = _lines_in_scope(file, patient, decision, body)
        if not body:
            continue
        if not logged:
            access_log_commit(event=_download_event(file, patient, decision))
            logged = True
        yield body
