"""The worker's side of an export: chunks read through the gate, sealed, and stored with the cursor."""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from api.bulk_export.filters import criteria_for
from api.bulk_export.lifecycle import export_ttl
from api.bulk_models import OPEN_STATUSES, ExportJob, ExportSegment, ExportStatus
from consent import gate, pdp
from consent.purposes import Action
from healthledger.errors import IntegrityFailure, KeyDestroyed, ResourceNotFound
from records.models import Patient, Resource

logger = logging.getLogger(__name__)

EXPORT_CHUNK = 250  # resources per gate read: the worker's memory is about one chunk
EXPORT_STEP_SECONDS = 20  # one task runs chunks this long, then queues the next step (well inside its time limit)


def _caller(job: ExportJob) -> gate.Caller:
    return gate.Caller(
        actor=job.requester, purpose=job.purpose, job_id=f"export:{job.pk}", patient_context=job.patient_context
    )


def _patient_types(job: ExportJob, patient: Patient) -> list[str]:
    """The exported types this record holds that the caller's grant covers, decided (not yet read, so not logged)."""
    held = set(Resource.objects.filter(patient_id=patient.pk).values_list("resource_type", flat=True).distinct())
    wanted = sorted(held & set(job.resource_types))
    now = timezone.now()
    # The grants once for every type (the gate decides each read again, against the grants of that moment).
    grants = pdp.live_grants(grantee_id=job.requester.pk, patient_id=patient.pk, purpose=job.purpose, at=now)
    return [
        t
        for t in wanted
        if pdp.decide(
            actor=job.requester,
            patient_id=patient.pk,
            patient_user_id=patient.user_id,
            action=Action.READ,
            resource_types=[t],
            purpose=job.purpose,
            at=now,
            grants=grants,
            patient_context=job.patient_context,
        ).permit
    ]


def _next_patient(job: ExportJob) -> None:
    job.cursor = {"p": job.cursor["p"] + 1, "seq": job.cursor["seq"]}
    job.patients_done += 1


@dataclass
class _Chunk:
    """What one chunk holds until it commits: the current record (and its sealer) and the segments to store."""

    patient_id: str = ""
    patient: Patient | None = None
    sealer: gate.ExportSegmentSealer | None = None
    segments: list[ExportSegment] = field(default_factory=list)


def _advance(job: ExportJob, patient_ids: Sequence[str], chunk: _Chunk) -> int | None:
    """One move of the cursor: the resources it exported (0 for a move that read nothing); None once complete.

    Nothing is written before the gate's read and nothing that can fail after it: the sealer holds the
    record's key from before the read, and the segment is stored with the chunk.
    """
    cursor = job.cursor
    if cursor["p"] >= len(patient_ids):
        now = timezone.now()
        job.status, job.completed_at, job.expires_at = ExportStatus.COMPLETED, now, now + export_ttl()
        return None
    patient_id = patient_ids[cursor["p"]]
    if chunk.patient_id != patient_id:
        chunk.patient_id, chunk.sealer = patient_id, None
        chunk.patient = Patient.objects.filter(pk=patient_id, erased_at__isnull=True).first()
    patient = chunk.patient
    if patient is None:  # erased since the export began: nothing of it is exported
        _next_patient(job)
        return 0
    if chunk.sealer is None:
        chunk.sealer = gate.export_segment_sealer(export_id=job.pk, patient=patient)
    sealer = chunk.sealer
    if "types" not in cursor:
        cursor.update(types=_patient_types(job, patient), t=0, f=0, offset=0)
        return 0
    if cursor["t"] >= len(cursor["types"]):
        _next_patient(job)
        return 0
    resource_type = cursor["types"][cursor["t"]]
    searches = criteria_for(job, resource_type)
    if cursor["f"] >= len(searches):
        cursor.update(t=cursor["t"] + 1, f=0, offset=0)
        return 0
    try:
        page = gate.resource_search_counted(
            caller=_caller(job),
            patient=patient,
            resource_type=resource_type,
            criteria=searches[cursor["f"]],
            sort="",  # storage order (the row id): stable for paging, and the page and total in one statement
            limit=EXPORT_CHUNK,
            offset=cursor["offset"],
            query=f"$export {resource_type} chunk {cursor['offset']}",
            partial=True,  # a version failing its integrity check is left out (and logged); the rest is served
        )
    except ResourceNotFound:
        # The grant no longer covers what it covered when this record's export began: stop the rest of it.
        job.stopped = [*job.stopped, str(patient.pk)]
        _next_patient(job)
        return 0
    if page.bodies:
        seq = cursor["seq"]
        sealed = sealer.seal(resource_type=resource_type, seq=seq, plaintext=b"\n".join(page.bodies) + b"\n")
        chunk.segments.append(
            ExportSegment(
                job=job, resource_type=resource_type, seq=seq, patient=patient, count=len(page.bodies), sealed=sealed
            )
        )
        cursor["seq"] = seq + 1
        job.resources += len(page.bodies)
    seen = cursor["offset"] + len(page.references) + len(page.failed)
    if seen >= (page.total or 0) or not (page.references or page.failed):
        cursor.update(f=cursor["f"] + 1, offset=0)
    else:
        cursor["offset"] = seen
    return len(page.bodies)


_PROGRESS_FIELDS = ["status", "cursor", "stopped", "resources", "patients_done", "completed_at", "expires_at"]


def _chunk(job: ExportJob, patient_ids: Sequence[str]) -> bool:
    """Move the cursor until about EXPORT_CHUNK resources were exported (at most twice that held at once), then
    store their segments; True when the export is complete. A record erased under the export is skipped."""
    chunk = _Chunk()
    exported = 0
    done = False
    while exported < EXPORT_CHUNK and not done:
        before = (copy.deepcopy(job.cursor), job.patients_done)
        try:
            moved = _advance(job, patient_ids, chunk)
        except (KeyDestroyed, IntegrityFailure) as exc:
            # Raised before anything of the record was read or logged (the gate's read rolls back its own).
            logger.warning("bulk export %s: a record could not be exported (%s)", job.pk, type(exc).__name__)
            job.cursor, job.patients_done = before
            chunk.patient_id = ""
            _next_patient(job)
            continue
        done = moved is None
        exported += moved or 0
    ExportSegment.objects.bulk_create(chunk.segments)
    return done


def export_step(*, job_id: uuid.UUID | str, budget_seconds: float | None = None, max_chunks: int = 0) -> bool:
    """Run an export's chunks for up to `budget_seconds` (or `max_chunks`); True when nothing is left to do.

    Idempotent: a finished, cancelled or expired export does nothing; each chunk commits with its position.
    """
    started, chunks = time.monotonic(), 0
    budget = EXPORT_STEP_SECONDS if budget_seconds is None else budget_seconds
    # The cohort is frozen at kick-off: read once per step, never rewritten with the progress.
    patient_ids = ExportJob.objects.filter(pk=job_id).values_list("patient_ids", flat=True).first() or []
    while True:
        with transaction.atomic():
            # The row lock: two deliveries of the same export never export the same chunk twice.
            job = (
                ExportJob.objects.select_for_update(of=("self",))
                .select_related("requester")
                .defer("patient_ids")
                .filter(pk=job_id)
                .first()
            )
            if job is None or job.status not in OPEN_STATUSES:
                return True
            job.status = ExportStatus.RUNNING
            done = _chunk(job, patient_ids)
            job.save(update_fields=[*_PROGRESS_FIELDS, "updated_at"])
        chunks += 1
        if done:
            logger.info("bulk export %s completed: %d resources", job.pk, job.resources)
            return True
        if (max_chunks and chunks >= max_chunks) or time.monotonic() - started >= budget:
            return False
