"""Celery tasks of consent: the periodic scans that tell patients what happened to their records."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from consent.alerts import access_alerts_scan, grant_expiry_alerts


@shared_task(
    bind=True,
    name="consent.tasks.patient_alerts_task",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=3,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def patient_alerts_task(self) -> int:  # type: ignore[no-untyped-def]
    """Scan the access log since the last run and the grants ending within a week; idempotent by dedupe keys."""
    try:
        read = access_alerts_scan()
        grant_expiry_alerts(now=timezone.now())
    except DatabaseError as exc:
        raise self.retry(exc=exc, countdown=30) from exc
    return read


@shared_task(
    bind=True,
    name="consent.tasks.key_resets_complete_task",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=3,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def key_resets_complete_task(self) -> int:  # type: ignore[no-untyped-def]
    """Queue completeKeyReset for every approved key reset whose public delay has passed; idempotent (one
    outbox row per reset)."""
    from consent.key_reset import key_resets_complete_due

    try:
        return len(key_resets_complete_due())
    except DatabaseError as exc:
        raise self.retry(exc=exc, countdown=30) from exc
