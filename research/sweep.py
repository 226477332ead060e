"""A lost broker loses no accepted run: the database is the record of each run, the broker only carries it.

A run is accepted as a queued AnalysisRun row; its start message is published on commit, and its chunks'
messages when the start (or a round) commits, each stamped `dispatched_at`. The sweeper (Celery beat,
research.tasks.runs_sweep) sends again:

- the start of a run still queued whose message went out more than RESEARCH_REDISPATCH_SECONDS ago, or
  never (the publish on commit failed: a broker down);
- each chunk of a running run, in the run's current round, not done, whose message went out as long ago.

Both tasks are idempotent (row locks, a run no longer queued and a chunk done or of another round do
nothing), so a message sent twice costs at most a repeated read, never a doubled sum. Arguments are ids.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from research.models import AnalysisRun, RunChunk, RunStatus

logger = logging.getLogger(__name__)


def redispatch_after() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "RESEARCH_REDISPATCH_SECONDS", 300)))


@dataclass
class SweepReport:
    starts: int = 0
    chunks: int = 0


def runs_sweep(
    *,
    send_start: Callable[[str], None],
    send_chunk: Callable[[str, int, int], None],
    now: datetime | None = None,
) -> SweepReport:
    """Re-send every start and chunk message owed and not seen done in time; returns what was sent."""
    now = now or timezone.now()
    stale = now - redispatch_after()
    report = SweepReport()
    queued = AnalysisRun.objects.filter(status=RunStatus.QUEUED).filter(
        Q(dispatched_at__isnull=True, created_at__lt=stale) | Q(dispatched_at__lt=stale)
    )
    for run_id in queued.values_list("pk", flat=True):
        # Stamped before sending: a sweeper on another machine does not send it too.
        if AnalysisRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(dispatched_at=now):
            transaction.on_commit(functools.partial(send_start, str(run_id)))
            report.starts += 1
    owed = RunChunk.objects.filter(run__status=RunStatus.RUNNING, done=False).filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale)
    )
    for chunk in owed.select_related("run"):
        round_no = (chunk.run.iteration or {}).get("round", 0)
        if chunk.round != round_no:
            continue  # a chunk between rounds: the combiner is opening the next one
        if RunChunk.objects.filter(pk=chunk.pk, done=False, round=round_no).update(dispatched_at=now):
            transaction.on_commit(functools.partial(send_chunk, str(chunk.run_id), chunk.index, round_no))
            report.chunks += 1
    if report.starts or report.chunks:
        logger.warning("research sweep re-sent %s run starts and %s chunks", report.starts, report.chunks)
    return report
