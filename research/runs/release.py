"""Release an output its checkers approved: differencing asked again, provenance, the access log."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from accounts.models import User
from audit.models import AccessLogAnchor, AccessLogCheckpoint, Outcome
from research import disclosure
from research.models import AnalysisRun, Release, ReleaseStatus, RunMember
from research.runs.combine import _earlier_releases
from research.runs.journal import _log


def _checkpoint() -> dict[str, Any]:
    checkpoint = AccessLogCheckpoint.objects.order_by("-last_seq").first()
    if checkpoint is None:
        return {"checkpoint": None, "anchor": None}
    anchor = AccessLogAnchor.objects.filter(checkpoint=checkpoint).order_by("-id").first()
    return {
        "checkpoint": {"id": checkpoint.pk, "last_seq": checkpoint.last_seq, "root": bytes(checkpoint.root).hex()},
        "anchor": None if anchor is None else {"status": anchor.status, "tx_hash": anchor.tx_hash},
    }


def release_finalise(*, release: Release, by: User) -> Release:
    """Release an output its checkers approved (caller holds the release locked): provenance, ledger, log.

    Differencing is asked again: another release of the same analysis may have landed since the run.
    """
    run = AnalysisRun.objects.select_for_update().get(pk=release.run_id)
    cohort = frozenset(RunMember.objects.filter(run=run).values_list("patient_id", flat=True))
    report = disclosure.Report()
    t = disclosure.thresholds()
    disclosure.differencing_check(cohort, _earlier_releases(run), t, report)
    if report.blocked:
        release.status = ReleaseStatus.REFUSED
        release.save(update_fields=["status"])
        _log(run, "research.release.refuse", outcome=Outcome.DENY, reason="differencing")
        return release
    release.provenance = {
        "spec_hash": run.spec_hash,
        "analysis": {"id": run.analysis_id, "version": run.analysis_version, "code_hash": run.code_hash},
        "params": run.params,
        "cohort_size_rounded": disclosure.round_to(run.cohort_size, t.rounding),
        "cohort_commitment": run.cohort_root,
        "access_log": _checkpoint(),
        "checks": release.checks.count(),
    }
    release.status = ReleaseStatus.RELEASED
    release.released_at = timezone.now()
    release.save(update_fields=["provenance", "status", "released_at"])
    _log(run, "research.release", query=f"run={run.pk} release={release.pk}")
    return release
