"""Celery tasks of research: ids only, never data. The services make redelivery harmless.

`analysis_run_start` freezes the cohort and fans out one `analysis_chunk_run` per chunk; the chunk
that finishes last combines. `studies_close` is the beat job closing studies past their end date.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import transaction

from research import runs
from research.services import studies_close_ended

_LIMITS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "soft_time_limit": settings.CELERY_TASK_SOFT_TIME_LIMIT,
    "time_limit": settings.CELERY_TASK_TIME_LIMIT,
}


@shared_task(bind=True, name="research.tasks.analysis_run_start", **_LIMITS)
def analysis_run_start(self, run_id: str) -> int:  # type: ignore[no-untyped-def]
    """Freeze and commit the run's cohort, then queue its chunks (on commit), on the queue this came from."""
    queue = (self.request.delivery_info or {}).get("routing_key") or None
    with transaction.atomic():
        chunks = runs.analysis_run_start(run_id=run_id)
        for index in chunks:
            transaction.on_commit(
                lambda index=index: analysis_chunk_run.apply_async(args=[run_id, index], queue=queue)  # type: ignore[misc]
            )
    return len(chunks)


@shared_task(bind=True, name="research.tasks.analysis_chunk_run", **_LIMITS)
def analysis_chunk_run(self, run_id: str, index: int, round_no: int = 0) -> bool:  # type: ignore[no-untyped-def]
    """Read one chunk through the gate and store its sums; the last chunk combines, or opens the next round."""
    if not runs.analysis_chunk_run(run_id=run_id, index=index, round_no=round_no):
        return False
    queue = (self.request.delivery_info or {}).get("routing_key") or None
    with transaction.atomic():
        run, chunks = runs.analysis_run_advance(run_id=run_id)
        following = run.iteration["round"] if run.iteration else round_no + 1
        for chunk in chunks:
            transaction.on_commit(
                lambda chunk=chunk: analysis_chunk_run.apply_async(args=[run_id, chunk, following], queue=queue)  # type: ignore[misc]
            )
    return True


@shared_task(name="research.tasks.studies_close", **_LIMITS)
def studies_close() -> int:
    """Close every study past its end date."""
    return studies_close_ended()


@shared_task(name="research.tasks.change_notices_settle", **_LIMITS)
def change_notices_settle() -> int:
    """Carry over joins whose 14-day objection period ended without an objection."""
    from research.preferences import change_notices_settle as settle

    return settle()


@shared_task(name="research.tasks.runs_sweep", **_LIMITS)
def runs_sweep() -> dict[str, int]:
    """Re-send run starts and chunks whose messages a lost broker dropped (research.sweep)."""
    from research.sweep import runs_sweep as sweep

    with transaction.atomic():
        report = sweep(
            send_start=lambda run_id: analysis_run_start.delay(run_id),
            send_chunk=lambda run_id, index, round_no: analysis_chunk_run.delay(run_id, index, round_no),
        )
    return {"starts": report.starts, "chunks": report.chunks}
