"""Job dispatch: the database is the record of every accepted job, the broker only carries it to a worker.

A job is accepted in one transaction together with its `JobDispatch` row (the dispatch outbox, as chain
writes have `ledger.outbox`). From there:

- on commit, one bounded attempt to publish it (connection and socket timeouts of
  `JOB_PUBLISH_TIMEOUT_SECONDS`); a failure is logged and left to the dispatcher, and this process skips its
  own on-commit attempts for `JOB_PUBLISH_BREAKER_SECONDS` so a paused broker costs one request one timeout,
  not every request;
- the dispatcher (beat, every `JOB_DISPATCH_SECONDS`) publishes every row still owed to the broker, with
  backoff per row;
- the sweeper (same beat task) looks, for each open job published more than `JOB_REDISPATCH_SECONDS` ago and
  not touched since, for its message in the broker (queued or unacknowledged), and re-dispatches a job whose
  message is gone: a Redis that restarted without its data, a retry that could not be published.

A job published twice runs once to effect: each delivery takes the job's row lock and a terminal job does
nothing, and the result's primary key is the job (diagnostics.services). Task arguments are job ids only.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from diagnostics.models import TERMINAL_STATUSES, DiagnosticJob, JobDispatch

logger = logging.getLogger(__name__)

# The backoff of a row whose publish failed: BASE * 2**(attempts - 1), capped.
BACKOFF_BASE_SECONDS = 2
BACKOFF_MAX_SECONDS = 60
# How long a publish attempt in progress holds its rows before the dispatcher may take them.
CLAIM_SECONDS = 30
DISPATCH_BATCH = 200
REDIS_TRIES = 4  # redis-py's default: one try and three retries on a timeout

_OPEN = Q(job__status__in=["queued", "running"])


class BrokerUnavailable(Exception):
    """The broker could not be reached or did not answer in time."""


@dataclass
class DispatchReport:
    """What one dispatcher pass did."""

    published: int = 0
    failed: int = 0
    redispatched: int = 0  # open jobs whose broker message was gone
    swept: bool = False  # False when the broker could not be searched (down, or not Redis)

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


# --- Breaker: one process's memory of a broker that just failed ------------------------------------------

_breaker_lock = threading.Lock()
_breaker_open_until = 0.0


def _breaker_open() -> bool:
    return time.monotonic() < _breaker_open_until


def _breaker_trip() -> None:
    global _breaker_open_until
    with _breaker_lock:
        _breaker_open_until = time.monotonic() + settings.JOB_PUBLISH_BREAKER_SECONDS


def _breaker_reset() -> None:
    global _breaker_open_until
    with _breaker_lock:
        _breaker_open_until = 0.0


# --- Publishing (the one seam to the broker) ---------------------------------------------------------------


def _publish(job_ids: Sequence[str], *, batch_size: int = 1) -> None:
    """Publish messages for these jobs, `batch_size` ids per message; BrokerUnavailable when it cannot."""
    from diagnostics.tasks import diagnostic_job_run, diagnostic_jobs_run_batch
    from healthledger.celery import app

    # redis-py retries a timed-out command three times on its own (and kombu passes no way to stop it), so each
    # socket wait gets a quarter of the budget: the whole attempt stays within JOB_PUBLISH_TIMEOUT_SECONDS.
    timeout = settings.JOB_PUBLISH_TIMEOUT_SECONDS / REDIS_TRIES
    batches = [list(job_ids[i : i + batch_size]) for i in range(0, len(job_ids), max(1, batch_size))]
    try:
        with app.connection_for_write(
            connect_timeout=timeout,
            # max_retries 0: one connection attempt, no reconnect loop inside the request.
            transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0},
        ) as conn:
            for batch in batches:
                if len(batch) == 1:
                    diagnostic_job_run.apply_async(args=[batch[0]], connection=conn, retry=False)
                else:
                    diagnostic_jobs_run_batch.apply_async(args=[batch], connection=conn, retry=False)
    except Exception as exc:  # any broker failure: the rows stay owed, the dispatcher tries again
        raise BrokerUnavailable(type(exc).__name__) from exc


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(max(attempts, 1) - 1, 16)))


def _mark_published(job_ids: Sequence[str]) -> None:
    JobDispatch.objects.filter(job_id__in=list(job_ids)).update(
        published_at=timezone.now(), publishes=F("publishes") + 1, attempts=0, last_error=""
    )


def _mark_failed(job_ids: Sequence[str], error: str) -> None:
    now = timezone.now()
    for row in JobDispatch.objects.filter(job_id__in=list(job_ids), published_at__isnull=True):
        row.attempts += 1
        row.next_attempt_at = now + _backoff(row.attempts)
        row.last_error = error[:120]
        row.save(update_fields=["attempts", "next_attempt_at", "last_error"])


def _publish_and_record(job_ids: Sequence[str], *, batch_size: int = 1) -> bool:
    try:
        _publish(job_ids, batch_size=batch_size)
    except BrokerUnavailable as exc:
        _breaker_trip()
        _mark_failed(job_ids, str(exc))
        logger.warning("job dispatch: broker unavailable (%s); %d job(s) left to the dispatcher", exc, len(job_ids))
        return False
    _breaker_reset()
    _mark_published(job_ids)
    return True


# --- Accepting ---------------------------------------------------------------------------------------------


def job_dispatch_add(*, job_ids: Iterable[str], batch_size: int = 1, publish: bool = True) -> None:
    """Record in the caller's transaction that these jobs are owed to the broker; publish them on commit.

    `publish=False` leaves the publishing to the dispatcher (or to a later `job_dispatch_add` of the same
    ids with a batch size, as the benchmark does). Adding a job again keeps its one row.
    """
    if not connection.in_atomic_block:
        # The row commits or rolls back with the job it dispatches: an accepted job is never without it.
        raise RuntimeError("job_dispatch_add must be called inside the transaction that accepts the jobs")
    ids = [str(job_id) for job_id in job_ids]
    # Held back from the dispatcher for a moment, so it does not publish what the on-commit attempt is publishing.
    hold = timezone.now() + timedelta(seconds=CLAIM_SECONDS if publish else 0)
    JobDispatch.objects.bulk_create(
        [JobDispatch(job_id=job_id, next_attempt_at=hold) for job_id in ids], ignore_conflicts=True
    )
    if publish:
        transaction.on_commit(lambda: _publish_on_commit(ids, batch_size))


def _publish_within(job_ids: list[str], batch_size: int, deadline: float) -> str:
    """Publish in a helper thread and wait for it at most `deadline` seconds: "" when published, else why not.

    The library's own timeouts bound each socket wait, not the whole attempt (connection set-up, retries);
    the thread makes the request's wait a hard bound. A publish that completes after the deadline only
    duplicates a message the dispatcher sends again, which the job's idempotent run absorbs.
    """
    from healthledger.celery import app

    if app.conf.task_always_eager:
        # Eager (tests, CELERY_TASK_ALWAYS_EAGER): the "publish" runs the task here, on this thread's database
        # connection; there is no broker to wait for.
        try:
            _publish(job_ids, batch_size=batch_size)
        except BrokerUnavailable as exc:
            return str(exc)
        return ""
    outcome: dict[str, str] = {}
    done = threading.Event()

    def attempt() -> None:
        try:
            _publish(job_ids, batch_size=batch_size)
        except BrokerUnavailable as exc:
            outcome["error"] = str(exc)
        finally:
            done.set()

    threading.Thread(target=attempt, name="job-publish", daemon=True).start()
    if not done.wait(deadline):
        return "Timeout"
    return outcome.get("error", "")


def _publish_on_commit(job_ids: list[str], batch_size: int) -> None:
    """The first attempt, in the accepting request; never raises and never waits longer than the timeout."""
    try:
        if _breaker_open():
            JobDispatch.objects.filter(job_id__in=list[Any](job_ids), published_at__isnull=True).update(
                next_attempt_at=timezone.now()
            )
            return
        ids = job_ids
        error = _publish_within(ids, batch_size, settings.JOB_PUBLISH_TIMEOUT_SECONDS)
        if error:
            _breaker_trip()
            _mark_failed(ids, error)
            logger.warning("job dispatch: broker unavailable (%s); %d job(s) left to the dispatcher", error, len(ids))
            return
        _breaker_reset()
        _mark_published(job_ids)
    except Exception as exc:  # the request already committed its job: the dispatcher owes it to the broker
        logger.warning("job dispatch on commit failed (%s); the dispatcher will publish", type(exc).__name__)


# --- The dispatcher and the sweeper (beat) -----------------------------------------------------------------


def _claim_due(now: Any) -> list[str]:
    due = list(
        JobDispatch.objects.filter(published_at__isnull=True, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("job_id", flat=True)[:DISPATCH_BATCH]
    )
    claimed = []
    for job_id in due:
        # Compare-and-set: of two dispatchers (two beats, or a beat and a slow on-commit) one takes the row.
        if JobDispatch.objects.filter(job_id=job_id, published_at__isnull=True, next_attempt_at__lte=now).update(
            next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)
        ):
            claimed.append(str(job_id))
    return claimed


def job_dispatch_pending() -> DispatchReport:
    """One dispatcher pass: publish every job owed to the broker, then sweep for jobs whose message is gone."""
    report = DispatchReport()
    now = timezone.now()
    # A terminal job needs no message (it ended before its dispatch, e.g. run by an earlier one).
    JobDispatch.objects.filter(published_at__isnull=True, job__status__in=sorted(TERMINAL_STATUSES)).update(
        published_at=now
    )
    claimed = _claim_due(now)
    if claimed:
        if _publish_and_record(claimed):
            report.published = len(claimed)
        else:
            report.failed = len(claimed)
            return report
    swept = job_sweep()
    if swept is not None:
        report.swept = True
        report.redispatched = len(swept)
    return report


def _overdue(now: Any) -> list[str]:
    cutoff = now - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS)
    return [
        str(job_id)
        for job_id in JobDispatch.objects.filter(_OPEN, published_at__lt=cutoff, job__updated_at__lt=cutoff)
        .order_by("published_at")
        .values_list("job_id", flat=True)[:DISPATCH_BATCH]
    ]


def job_sweep() -> list[str] | None:
    """Re-dispatch open jobs past their deadline that the broker holds no message for; None if it cannot look.

    Returns the ids re-dispatched. A job whose message is queued, or delivered and not yet acknowledged (a
    worker runs it, or holds it for a retry countdown), is left alone: the broker will deliver it.
    """
    overdue = _overdue(timezone.now())
    if not overdue:
        return []
    try:
        live = broker_job_ids()
    except BrokerUnavailable as exc:
        logger.warning("job sweep: cannot search the broker (%s)", exc)
        return None
    lost = [job_id for job_id in overdue if job_id not in live]
    if not lost:
        return []
    JobDispatch.objects.filter(job_id__in=list[Any](lost)).update(published_at=None, next_attempt_at=timezone.now())
    logger.warning("job sweep: %d open job(s) had no broker message; re-dispatching", len(lost))
    for job_id in lost:
        logger.info("job re-dispatched id=%s", job_id)
    _publish_and_record(lost)
    return lost


# --- Looking into the broker -------------------------------------------------------------------------------


def _message_job_ids(raw: bytes | str) -> set[str]:
    """The job ids a kombu Redis message carries (a queued message, or an unacked [message, exchange, key])."""
    try:
        data = json.loads(raw)
        if isinstance(data, list):
            data = data[0]
        if data.get("headers", {}).get("task") not in {
            "diagnostics.tasks.diagnostic_job_run",
            "diagnostics.tasks.diagnostic_jobs_run_batch",
        }:
            return set()
        body = data["body"]
        if data.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return set()
    first = args[0] if args else None
    if isinstance(first, list):
        return {str(job_id) for job_id in first}
    return {str(first)} if first else set()


def broker_job_ids() -> set[str]:
    """Every job id the broker holds a message for, queued in any queue or delivered and unacknowledged.

    Redis only (the broker this project runs); BrokerUnavailable for any other broker or a Redis that does
    not answer within the publish timeout.
    """
    import redis

    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise BrokerUnavailable("not a Redis broker")
    timeout = settings.JOB_PUBLISH_TIMEOUT_SECONDS
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    found: set[str] = set()
    try:
        for key in client.scan_iter(count=500, _type="list"):
            for raw in client.lrange(key, 0, -1):
                found |= _message_job_ids(raw)
        # A delivered message counts while its delivery is younger than the visibility timeout: past it, its
        # worker is presumed dead (Redis would hand it out again, but only when some worker gets round to the
        # restore, which can take minutes), so the sweeper may publish the job again; a late second delivery
        # finds the job done.
        visible_after = time.time() - float(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600))
        scored = cast(list[tuple[bytes, float]], client.zrange("unacked_index", 0, -1, withscores=True))
        fresh = {tag for tag, at in scored if at > visible_after}
        for tag, raw in client.hgetall("unacked").items():
            if tag in fresh:
                found |= _message_job_ids(raw)
    except redis.RedisError as exc:
        raise BrokerUnavailable(type(exc).__name__) from exc
    finally:
        client.close()
    return found


# --- Status ------------------------------------------------------------------------------------------------


def job_dispatch_status(*, search_broker: bool = False) -> dict[str, Any]:
    """What an operator needs to see: jobs owed to the broker, the oldest one's age, open jobs past deadline.

    `search_broker=True` also counts the overdue open jobs the broker holds no message for (a Redis scan:
    the status command, not /healthz).
    """
    now = timezone.now()
    owed = JobDispatch.objects.filter(published_at__isnull=True)
    oldest = owed.aggregate(oldest=Min("job__created_at"))["oldest"]
    overdue = _overdue(now)
    status: dict[str, Any] = {
        "undispatched": owed.count(),
        "oldest_undispatched_s": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
        "open": DiagnosticJob.objects.filter(status__in=["queued", "running"]).count(),
        "overdue": len(overdue),
    }
    if search_broker:
        try:
            live = broker_job_ids()
            status["without_broker_message"] = sum(1 for job_id in overdue if job_id not in live)
        except BrokerUnavailable as exc:
            status["without_broker_message"] = f"unknown ({exc})"
    return status
