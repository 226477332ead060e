"""Celery tasks of diagnostics: run queued jobs. Arguments are job ids only, never data.

At-least-once delivery is made harmless by the service: each delivery counts itself on the
job row, a terminal job does nothing, and the release is one transaction under the job's
row lock. Here: `acks_late` with `reject_on_worker_lost`, so a killed child's message goes
back to the queue (Redis redelivers it after the visibility timeout, which settings keep
above the hard time limit); a soft time limit that ends the job failed, a hard one behind it;
and retries with backoff while the chain cannot be asked.

Batching: `diagnostic_jobs_run_batch` runs several job ids from one message, one after the
other, each exactly as `diagnostic_job_run` would. It exists to spread one broker round trip
and one task dispatch over several jobs when many are queued at once (a clinic's morning
list, the benchmark). It has the single task's time limits: on the soft one it fails the job it
was running and queues the batch's remaining jobs again.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from diagnostics.dispatch import job_dispatch_pending
from diagnostics.services import RunOutcome, chain_answers_per_block, diagnostic_job_execute, diagnostic_job_fail

logger = logging.getLogger(__name__)

MAX_BATCH = 16
# A database that is busy or briefly away (SQLite's lock, a PostgreSQL failover) is tried again this soon.
DATABASE_RETRY_SECONDS = 2


def _run_one(job_id: str) -> RunOutcome:
    """One job, whatever happens: an outcome, never an exception (one escaping would ack the message, losing the job).

    A database error leaves the job as it was (running, its delivery counted) and asks for a retry: the
    next delivery counts this one as lost, so a database that never recovers still ends in the poison limit.
    """
    try:
        try:
            return diagnostic_job_execute(job_id=job_id)
        except DatabaseError:
            raise
        except Exception as exc:  # a model or store bug, or the soft time limit: this job fails, the rest carry on
            return diagnostic_job_fail(job_id=job_id, error=exc)
    except DatabaseError as exc:
        logger.warning("diagnostic job waits for the database id=%s (%s)", job_id, type(exc).__name__)
        return RunOutcome(status="unknown", retry_in=DATABASE_RETRY_SECONDS)


@shared_task(
    bind=True,
    name="diagnostics.tasks.diagnostic_job_run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,  # the job row counts retries (services.MAX_CHAIN_RETRIES), not Celery
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def diagnostic_job_run(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    """Run one diagnostic job (see diagnostics.services.diagnostic_job_execute)."""
    with chain_answers_per_block():  # this process's jobs share one answer per grant within a block
        outcome = _run_one(job_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


def _requeue(task, job_ids: list[str], countdown: int = 0) -> None:  # type: ignore[no-untyped-def]
    # Back to the queue this batch came from (a dedicated worker's queue stays its own).
    queue = (task.request.delivery_info or {}).get("routing_key") or None
    diagnostic_jobs_run_batch.apply_async(args=[job_ids], countdown=countdown, queue=queue)


@shared_task(
    bind=True,
    name="diagnostics.tasks.diagnostic_jobs_run_batch",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # The single task's limits: the visibility timeout is set above them. A batch that reaches its soft
    # limit fails the job it was running and queues the rest again, so no batch needs more.
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def diagnostic_jobs_run_batch(self, job_ids: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """Run several diagnostic jobs in turn; those waiting for the chain or the database go back as one batch."""
    ids = [str(job_id) for job_id in job_ids[:MAX_BATCH]]
    if len(job_ids) > MAX_BATCH:
        _requeue(self, [str(job_id) for job_id in job_ids[MAX_BATCH:]])
    # The process's jobs share the chain's answer about a grant within one block (see chain_answers_per_block).
    with chain_answers_per_block():
        return _run_batch(self, ids)


def _run_batch(task, ids: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    statuses: list[str] = []
    waiting: list[str] = []
    retry_in = 0
    for index, job_id in enumerate(ids):
        outcome = _run_one(job_id)
        statuses.append(outcome.status)
        if outcome.soft_time_limited:
            # The rest of the batch never started: they go back to the queue untouched.
            rest = ids[index + 1 :]
            if rest:
                _requeue(task, rest)
            return statuses
        if outcome.retry_in is not None:
            waiting.append(job_id)
            retry_in = max(retry_in, outcome.retry_in)
    if waiting:
        _requeue(task, waiting, retry_in)
    return statuses


@shared_task(name="diagnostics.tasks.job_dispatch_task", acks_late=True, ignore_result=True)
def job_dispatch_task() -> dict[str, int | bool]:
    """One dispatcher pass (beat): publish the jobs owed to the broker, re-dispatch open jobs whose message is gone.

    No arguments: the dispatch rows are the work list. Safe to overlap (rows are claimed by compare-and-set)
    and to lose (the next tick does the same work).
    """
    return job_dispatch_pending().as_dict()
