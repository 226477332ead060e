"""An export's life outside the worker: accept (with its frozen cohort), publish, cancel, fail, expire."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Role, User
from api.bulk_export.filters import TypeFilter
from api.bulk_models import OPEN_STATUSES, ExportJob, ExportSegment, ExportStatus
from consent import pdp
from records.models import Patient

logger = logging.getLogger(__name__)

EXPORT_STALE_SECONDS = 180  # an open export that has not moved this long is published again
EXPORT_OPEN_MAX = 3  # open exports per requester at a time
_PUBLISH_TIMEOUT_SECONDS = 2.0


def export_ttl() -> timedelta:
    """How long a completed export's files live (BULK_EXPORT_TTL_SECONDS, default one hour)."""
    return timedelta(seconds=int(getattr(settings, "BULK_EXPORT_TTL_SECONDS", 3600)))


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


def export_fail(*, job_id: uuid.UUID | str, reason: str) -> None:
    ExportJob.objects.filter(pk=job_id, status__in=OPEN_STATUSES).update(
        status=ExportStatus.FAILED, error=reason[:200], expires_at=timezone.now() + export_ttl()
    )


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
