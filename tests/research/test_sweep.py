"""A lost broker loses no accepted run: the sweep re-sends a start and the chunks owed, once each."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from research import runs
from research.models import AnalysisRun
from research.services import analysis_run_request
from research.sweep import runs_sweep

pytestmark = pytest.mark.django_db


def test_a_run_whose_start_never_reached_the_broker_is_sent_by_the_sweep_and_its_lost_chunks_too(
    recruiting_study, make_patient, join, researcher, monkeypatch, django_capture_on_commit_callbacks
):
    from research import tasks

    def broker_down(*args: object) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.analysis_run_start, "delay", broker_down)
    study = recruiting_study()
    join(study, [make_patient() for _ in range(20)])
    with django_capture_on_commit_callbacks(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=0)  # accepted although unpublished
    starts: list[str] = []
    chunks: list[tuple[str, int, int]] = []

    def sweep(at):  # type: ignore[no-untyped-def]
        with django_capture_on_commit_callbacks(execute=True):
            return runs_sweep(send_start=starts.append, send_chunk=lambda *a: chunks.append(a), now=at)

    assert AnalysisRun.objects.get(pk=run.pk).dispatched_at is None
    assert sweep(timezone.now()).starts == 0  # not yet overdue
    later = timezone.now() + timedelta(minutes=6)
    assert sweep(later).starts == 1
    assert sweep(later).starts == 0  # stamped: sent once
    assert starts == [str(run.pk)]

    # The start runs; its chunk message is then lost with the broker.
    assert runs.analysis_run_start(run_id=str(run.pk)) == [0]
    assert sweep(timezone.now()).chunks == 0
    assert sweep(timezone.now() + timedelta(minutes=6)).chunks == 1
    assert chunks == [(str(run.pk), 0, 0)]
    assert runs.analysis_chunk_run(run_id=str(run.pk), index=0, round_no=0)
    runs.analysis_run_combine(run_id=str(run.pk))

    assert AnalysisRun.objects.get(pk=run.pk).status == "succeeded"
    assert sweep(timezone.now() + timedelta(hours=1)).chunks == 0
