"""Combine a round's chunks: merge their sums, apply disclosure control, end the run or open its next round."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from research import catalogue, disclosure
from research.models import AnalysisRun, Release, ReleaseStatus, RunChunk, RunMember, RunStatus
from research.runs.cohort import analysis_run_start
from research.runs.journal import _end
from research.runs.reading import analysis_chunk_run


def _earlier_releases(run: AnalysisRun) -> list[tuple[str, frozenset[Any]]]:
    released = Release.objects.filter(run__analysis_key=run.analysis_key, status=ReleaseStatus.RELEASED).exclude(
        run=run
    )
    return [
        (str(r.pk), frozenset(RunMember.objects.filter(run_id=r.run_id).values_list("patient_id", flat=True)))
        for r in released.order_by("released_at")
    ]


def analysis_run_combine(*, run_id: str) -> AnalysisRun:
    """Merge the chunks' sums, apply disclosure control, end the run (or start its next round). Idempotent."""
    return analysis_run_advance(run_id=run_id)[0]


def analysis_run_advance(*, run_id: str) -> tuple[AnalysisRun, list[int]]:
    """Combine the finished round: end the run, or, for an analysis fitted over rounds, open the next round.

    Returns the run and the chunk indexes the caller must queue for the next round; only the call that
    opened the round gets them, so a second combiner (two last chunks racing) queues nothing.
    """
    with transaction.atomic():
        run = AnalysisRun.objects.select_for_update().select_related("study").get(pk=run_id)  # one combiner wins
        if run.status != RunStatus.RUNNING or RunChunk.objects.filter(run=run, done=False).exists():
            return run, []
        analysis = catalogue.analysis_get(run.analysis_id)
        merged = analysis.empty(run.params)
        eligible = 0
        for chunk in RunChunk.objects.filter(run=run).order_by("index"):
            partial = dict(chunk.partial or {})
            eligible += int(partial.pop("eligible", 0))
            partial.pop("read", None)
            merged = analysis.merge(merged, partial)
        # The chunks' sums (and their largest values) have served: nothing per chunk is kept.
        RunChunk.objects.filter(run=run).update(partial=None)
        t = disclosure.thresholds()
        report = disclosure.Report()
        for entry in (run.report or {}).get("rules", []):
            report.entries[entry["id"]] = entry
        cohort = frozenset(RunMember.objects.filter(run=run).values_list("patient_id", flat=True))
        earlier = disclosure.differencing_check(cohort, _earlier_releases(run), t, report)
        if earlier is not None:
            run.result = Release.objects.get(pk=earlier).run.result
            _end(run, RunStatus.SUCCEEDED, f"identical to release {earlier}", report.as_dict())
            return run, []
        if report.blocked:
            _end(run, RunStatus.BLOCKED, "differencing: too close to an earlier release", report.as_dict())
            return run, []
        table = _disclose(analysis, merged, run, t, report)
        if table is None:  # the next round of an iterative fit
            return run, list(range(run.chunks_total))
        if report.blocked:
            run.result = None
            _end(run, RunStatus.BLOCKED, "disclosure control refused this output", report.as_dict())
            return run, []
        table["eligible_participants"] = disclosure.round_to(eligible, t.rounding) if eligible >= t.count else None
        run.result = table
        _end(run, RunStatus.SUCCEEDED, "", report.as_dict())
    return run, []


def _disclose(analysis: Any, merged: dict[str, Any], run: AnalysisRun, t: disclosure.Thresholds,
              report: disclosure.Report) -> dict[str, Any] | None:  # fmt: skip
    """The disclosed table of the merged sums, or None when an iterative fit opened its next round."""
    if analysis.id == "count-by-strata":
        return disclosure.counts_disclose(merged["cells"], run.params["strata"], t, report)
    if analysis.id == "observation-summary":
        return disclosure.summary_disclose(merged, run.params, t, report)
    if analysis.id == "incidence":
        return disclosure.incidence_disclose(merged, run.params, t, report)
    if analysis.id == "model-score-distribution":
        return disclosure.scores_disclose(merged, run.params, t, report)
    n = int(merged["n"])
    refused = {"kind": analysis.id, "n": disclosure.round_to(n, t.rounding) if n >= t.count else None,
               "coefficients": None, "flag": "suppressed-rules"}  # fmt: skip
    if not disclosure.regression_check(merged, run.params, t, report):
        return refused
    try:
        if analysis.id == "logistic-regression":
            following = analysis.step(merged, run.iteration)
            if following is not None:
                run.iteration = following
                run.save(update_fields=["iteration"])
                # Locks are held on the run: the chunks reopen for the next round, read again through the gate.
                RunChunk.objects.filter(run=run).update(
                    done=False, round=following["round"], dispatched_at=timezone.now()
                )
                return None
            fit = analysis.fit(merged, run.iteration)
        else:
            fit = analysis.fit(merged)
    except np.linalg.LinAlgError:
        report.note("SDC-REG-FIT", "blocked", where="model", detail="the declared variables are collinear here")
        return refused
    return disclosure.regression_table(fit, analysis.terms(run.params), n, run.params, t, report, kind=analysis.id)


def analysis_run_in_process(*, run_id: str) -> AnalysisRun:
    """Run every chunk of every round here, without a broker (the demo seed, the in-process bench, tests)."""
    round_no = 0
    chunks = analysis_run_start(run_id=run_id)
    while True:
        for index in chunks:
            analysis_chunk_run(run_id=run_id, index=index, round_no=round_no)
        run, chunks = analysis_run_advance(run_id=run_id)
        if not chunks:
            return run
        round_no = run.iteration["round"] if run.iteration else round_no + 1
