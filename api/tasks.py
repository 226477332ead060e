"""Celery tasks of the API: FHIR Bulk Data export. Arguments are export ids only, never data.

`bulk_export_run` runs an export's chunks for one step (api.bulk_export.worker.EXPORT_STEP_SECONDS) and queues
the next step until the export is done; each chunk commits with its position, so a redelivery resumes.
`bulk_export_housekeeping` (beat) deletes expired exports and publishes exports owed to the broker.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError

from api import bulk_export

logger = logging.getLogger(__name__)


@shared_task(
    name="api.tasks.bulk_export_run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=90,
    time_limit=120,
)
def bulk_export_run(export_id: str) -> None:
    try:
        done = bulk_export.export_step(job_id=export_id)
    except (DatabaseError, SoftTimeLimitExceeded) as exc:
        # The last committed chunk stands; beat publishes the export again once it looks stalled.
        logger.warning("bulk export %s: step interrupted (%s)", export_id, type(exc).__name__)
        return
    except Exception as exc:  # a bug: the export fails, saying so in its status, instead of looping
        logger.exception("bulk export %s failed", export_id)
        bulk_export.export_fail(job_id=export_id, reason=f"export failed ({type(exc).__name__})")
        return
    if not done:
        bulk_export.export_publish(job_id=export_id)


@shared_task(name="api.tasks.bulk_export_housekeeping", ignore_result=True, soft_time_limit=60, time_limit=90)
def bulk_export_housekeeping() -> dict[str, int]:
    return bulk_export.exports_housekeeping()
