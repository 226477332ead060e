"""FHIR Bulk Data export (IG v2) as a service: accept, run in chunks, cancel, expire, and never lose one.

Accepting writes the ExportJob row, which is its own dispatch outbox: on commit one bounded attempt
publishes `api.tasks.bulk_export_run`; the beat task (`bulk_export_housekeeping`) publishes an open
export that is still owed to the broker or has not moved for EXPORT_STALE_SECONDS (a lost message, a
killed worker), and deletes exports past their expiry. Task arguments are export ids only.

The worker runs the export in chunks of EXPORT_CHUNK resources: each chunk is one read through the
gate (consent.gate.resource_search_counted: decided, logged with the export's id as the job, in the
chunk's transaction), sealed under the patient's key (consent.gate.export_segment_sealer) and stored with the
worker's new position, all in one transaction under the export's row lock; so a redelivered
message resumes at the last committed chunk, and memory stays one chunk whatever the export's size.
Each chunk is decided afresh: a grant revoked mid-export denies the next chunk, and the rest of that
patient's export stops (named in the manifest's error file); the other patients carry on.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.http import QueryDict
from django.utils import timezone

from accounts.models import Role, User
from api.bulk_models import OPEN_STATUSES, ExportJob, ExportSegment, ExportStatus
from api.fhir.params import bad, unknown_check
from api.fhir.records import _criteria, supported_parameters
from consent import gate, pdp
from consent.purposes import Action
from healthledger.errors import IntegrityFailure, KeyDestroyed, ResourceNotFound
from records.models import Patient, Resource

logger = logging.getLogger(__name__)

EXPORT_CHUNK = 250  # resources per gate read: the worker's memory is about one chunk
EXPORT_STEP_SECONDS = 20  # one task runs chunks this long, then queues the next step (well inside its time limit)
EXPORT_STALE_SECONDS = 180  # an open export that has not moved this long is published again
EXPORT_OPEN_MAX = 3  # open exports per requester at a time
_PUBLISH_TIMEOUT_SECONDS = 2.0


def export_ttl() -> timedelta:
    """How long a completed export's files live (BULK_EXPORT_TTL_SECONDS, default one hour)."""
    return timedelta(seconds=int(getattr(settings, "BULK_EXPORT_TTL_SECONDS", 3600)))


@dataclass(frozen=True)
class TypeFilter:
    resource_type: str
    query: str  # the parameters after "?", as asked


def type_filter_parse(raw: str, types: Sequence[str]) -> TypeFilter:
    """One `_typeFilter` value (`Observation?code=...&date=ge2024`): its type must be exported, its parameters
    searchable on that type; 400 otherwise, at kick-off, before anything is read."""
    resource_type, sep, query = raw.partition("?")
    if not sep or resource_type not in types:
        raise bad("_typeFilter", f"{raw[:80]!r} is not <type>?<search parameters> of an exported type")
    asked = QueryDict(query)
    unknown = unknown_check(asked, supported_parameters(resource_type) - {"_sort"}, strict=True)
    if unknown or any(name.startswith("_") and name not in ("_id", "_lastUpdated") for name in asked):
        raise bad("_typeFilter", f"{raw[:80]!r}: only search parameters of {resource_type} are supported")
    _criteria(asked, resource_type)  # a bad value is a 400 here, not a failure in the worker
    return TypeFilter(resource_type=resource_type, query=query)


def _criteria_for(job: ExportJob, resource_type: str) -> list[gate.SearchCriteria]:
    """The searches that export one type: one per _typeFilter of it (ORed), else everything; each from _since."""
    filters = [f for f in job.type_filters if f.split("?", 1)[0] == resource_type]
    found: list[gate.SearchCriteria] = []
    for raw in filters or [f"{resource_type}?"]:
        criteria, satisfiable = _criteria(QueryDict(raw.split("?", 1)[1]), resource_type)
        if not satisfiable:
            continue
        if job.since is not None and (criteria.updated_ge is None or criteria.updated_ge < job.since):
            criteria = replace(criteria, updated_ge=job.since)
        found.append(criteria)
    return found


def export_cohort(
    *, requester: User, purpose: str, at: datetime, patient_context: uuid.UUID | None = None
) -> list[Patient]:
    """Whose records an export by `requester` covers: a patient's own; anyone else's, the records they hold a
    live grant on for this purpose (the Group this server exposes for them), in a stable order. A token in a
    patient's launch context (`patient_context`) narrows it to that record."""
    if requester.role == Role.PATIENT:
        found = Patient.objects.filter(user_id=requester.pk, erased_at__isnull=True)
    else:
        ids = pdp.live_grant_patients(grantee_id=requester.pk, purpose=purpose, at=at)
        found = Patient.objects.filter(pk__in=ids, erased_at__isnull=True)
    if patient_context is not None:
        found = found.filter(pk=patient_context)
    return list(found.order_by("fhir_id", "pk"))


def export_open_count(*, requester: User) -> int:
    return ExportJob.objects.filter(requester=requester, status__in=OPEN_STATUSES).count()


def export_accept(
    *,
    requester: User,
    application_id: int | None,
    purpose: str,
    patient_context: uuid.UUID | None,
    kind: str,
    request_url: str,
    resource_types: Sequence[str],
    since: datetime | None,
    type_filters: Sequence[TypeFilter],
) -> ExportJob:
    """Accept an export: the job row (with its frozen cohort) commits, then it is published; never lost after."""
    now = timezone.now()
    cohort = export_cohort(requester=requester, purpose=purpose, at=now, patient_context=patient_context)
    with transaction.atomic():
        job = ExportJob.objects.create(
            requester=requester,
            application_id=application_id,
            purpose=purpose,
            patient_context=patient_context,
            kind=kind,
            request_url=request_url,
            resource_types=list(resource_types),
            since=since,
            type_filters=[f"{f.resource_type}?{f.query}" for f in type_filters],
            patient_ids=[str(p.pk) for p in cohort],
            cursor={"p": 0, "seq": 0},
            transaction_time=now,
        )
        job_id = job.pk
        transaction.on_commit(lambda: export_publish(job_id=job_id))
    return job


def export_publish(*, job_id: uuid.UUID | str) -> bool:
    """One bounded attempt to hand the export to the broker; False (logged, left to beat) when it cannot."""
    from api.tasks import bulk_export_run
    from healthledger.celery import app

    try:
        if app.conf.task_always_eager:
            bulk_export_run.apply(args=[str(job_id)])
        else:
            with app.connection_for_write(
                connect_timeout=_PUBLISH_TIMEOUT_SECONDS,
                transport_options={
                    "socket_timeout": _PUBLISH_TIMEOUT_SECONDS,
                    "socket_connect_timeout": _PUBLISH_TIMEOUT_SECONDS,
                    "max_retries": 0,
                },
            ) as conn:
                bulk_export_run.apply_async(args=[str(job_id)], connection=conn, retry=False)
    except Exception as exc:  # any broker failure: the row stays owed, beat publishes it
        logger.warning("bulk export %s: publish failed (%s); left to the dispatcher", job_id, type(exc).__name__)
        return False
    ExportJob.objects.filter(pk=job_id).update(published_at=timezone.now(), publishes=F("publishes") + 1)
    return True


def export_cancel(*, job: ExportJob) -> None:
    """Cancel an export (DELETE on its status URL): it stops at its next chunk and its files are deleted now."""
    with transaction.atomic():
        # The row lock waits for a chunk in progress, so no segment is written after its files are deleted.
        locked = ExportJob.objects.select_for_update().get(pk=job.pk)
        locked.status = ExportStatus.CANCELLED
        locked.expires_at = timezone.now()
        locked.save(update_fields=["status", "expires_at", "updated_at"])
        ExportSegment.objects.filter(job_id=job.pk).delete()


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
    searches = _criteria_for(job, resource_type)
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


def export_fail(*, job_id: uuid.UUID | str, reason: str) -> None:
    ExportJob.objects.filter(pk=job_id, status__in=OPEN_STATUSES).update(
        status=ExportStatus.FAILED, error=reason[:200], expires_at=timezone.now() + export_ttl()
    )


@dataclass(frozen=True)
class OutputFile:
    resource_type: str
    count: int


def export_outputs(*, job: ExportJob) -> list[OutputFile]:
    """The manifest's files: one per exported type that has any resource, with its count."""
    rows = (
        ExportSegment.objects.filter(job_id=job.pk)
        .values("resource_type")
        .annotate(count=Sum("count"))
        .order_by("resource_type")
    )
    return [OutputFile(resource_type=row["resource_type"], count=row["count"]) for row in rows]


def export_file_lines(*, job: ExportJob, resource_type: str) -> Iterator[bytes]:
    """A file's ndjson for its requester, through the gate: each patient in it decided again now, and logged.

    One opened segment at a time (flat memory); a patient whose grant no longer covers the type, or whose
    record was erased, is left out.
    """
    caller = gate.Caller(actor=job.requester, purpose=job.purpose, patient_context=job.patient_context)
    segments = [
        gate.SealedSegment(key=pk, patient_id=patient_id, seq=seq)
        for pk, patient_id, seq in ExportSegment.objects.filter(job_id=job.pk, resource_type=resource_type)
        .order_by("seq")
        .values_list("pk", "patient_id", "seq")
    ]
    return gate.export_file_open(
        file=gate.ExportFile(caller=caller, export_id=job.pk, resource_type=resource_type),
        segments=segments,
        load=_segment_sealed,
    )


def _segment_sealed(key: int) -> bytes | None:
    sealed = ExportSegment.objects.filter(pk=key).values_list("sealed", flat=True).first()
    return None if sealed is None else bytes(sealed)


def exports_housekeeping() -> dict[str, int]:
    """Beat: delete expired exports (their files with them); publish open exports owed to the broker or stalled."""
    now = timezone.now()
    expired, _ = ExportJob.objects.filter(expires_at__lte=now).delete()
    owed = ExportJob.objects.filter(status__in=OPEN_STATUSES).filter(
        Q(published_at__isnull=True, created_at__lt=now - timedelta(seconds=10))
        | Q(updated_at__lt=now - timedelta(seconds=EXPORT_STALE_SECONDS))
    )
    published = 0
    for job_id in owed.values_list("pk", flat=True)[:100]:
        published += export_publish(job_id=job_id)
    return {"expired": expired, "published": published}
