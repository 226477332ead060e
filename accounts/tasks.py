"""Celery tasks of accounts: e-mail a notification. Arguments are notification ids only, never text."""

from __future__ import annotations

import logging
from smtplib import SMTPException

from celery import shared_task
from django.conf import settings

from accounts.services import notification_email_send

logger = logging.getLogger(__name__)

# A mail server that is down or refusing for a while: try again, less often, for about a day.
RETRY_SECONDS = 60
MAX_RETRIES = 10


@shared_task(
    bind=True,
    name="accounts.tasks.notification_email",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def notification_email(self, notification_id: int) -> str:  # type: ignore[no-untyped-def]
    """E-mail one notification (accounts.services.notification_email_send); a second delivery sends nothing."""
    try:
        return notification_email_send(notification_id=notification_id)
    except (SMTPException, OSError) as exc:
        logger.warning("notification e-mail waits for the mail server id=%s (%s)", notification_id, type(exc).__name__)
        raise self.retry(exc=exc, countdown=RETRY_SECONDS * 2**self.request.retries) from exc
