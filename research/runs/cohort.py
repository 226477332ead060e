"""Freeze a run's cohort and commit to it: one pseudonymous leaf per participant, its Merkle root in the
access log, and each participant's inclusion proof."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.merkle import inclusion_path, leaf_hash, merkle_root, split_leaves
from consent.models import GrantStatus
from records.models import Patient
from research import disclosure
from research.models import AnalysisRun, Participation, RunChunk, RunMember, RunStatus, Study
from research.runs.journal import _end, _log

# Participants per chunk task: a chunk's reads are a few statements whatever its size, so the task's own cost
# (message, loads, the chunk row's lock) is what a larger chunk spreads; one chunk's records at a time in memory.
CHUNK_SIZE = 100
LEAF_DOMAIN = "healthledger.research.cohort.v1"


def analysis_key(analysis_id: str, version: str, params: dict[str, Any]) -> str:
    body = orjson.dumps({"id": analysis_id, "version": version, "params": params}, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(body).hexdigest()


def cohort_leaf(*, run_id: str, grant_id: str) -> bytes:
    """A participant's leaf in a run's cohort commitment: pseudonymous (the grant id), per run.

    The patient knows their grant id and the run id, so they can find and verify their own leaf;
    nobody else learns who a leaf stands for.
    """
    return leaf_hash(f"{LEAF_DOMAIN}|{run_id}|{grant_id}".encode())


def _live_participations(study: Study, now: Any) -> list[Participation]:
    return list(
        Participation.objects.filter(
            study=study,
            withdrawn_at__isnull=True,
            spec_hash=study.spec_hash,
            grant__status=GrantStatus.RECORDED,
            grant__not_before__lte=now,
            grant__not_after__gt=now,
            patient__erased_at__isnull=True,
        ).order_by("grant_id")
    )


def analysis_run_start(*, run_id: str) -> list[int]:
    """Freeze the cohort and commit to it; returns the chunk indexes to run (none when blocked or done)."""
    with transaction.atomic():
        # Locks the run row: a second delivery waits, then finds the run no longer queued.
        run = AnalysisRun.objects.select_for_update().select_related("study").filter(pk=run_id).first()
        if run is None or run.status != RunStatus.QUEUED:
            return []
        study = run.study
        now = timezone.now()
        if study.state not in ("recruiting", "active") or study.ends_at <= now or study.spec_hash != run.spec_hash:
            _end(run, RunStatus.FAILED, "the study is not running (state, end date or spec changed)")
            return []
        cohort = _live_participations(study, now)
        report = disclosure.Report()
        if not disclosure.cohort_check(len(cohort), report, disclosure.thresholds(), minimum=study.spec["min_cohort"]):
            run.cohort_size = len(cohort)
            _end(run, RunStatus.BLOCKED, "cohort below the minimum size", report.as_dict())
            return []
        leaves = [cohort_leaf(run_id=str(run.pk), grant_id=p.grant_id) for p in cohort]
        run.cohort_size = len(cohort)
        run.cohort_leaves = b"".join(leaves)
        run.cohort_root = merkle_root(leaves).hex()
        run.chunks_total = (len(cohort) + CHUNK_SIZE - 1) // CHUNK_SIZE
        run.status = RunStatus.RUNNING
        run.report = report.as_dict()
        run.save()
        RunMember.objects.bulk_create(
            RunMember(run=run, participation=p, patient_id=p.patient_id, chunk=i // CHUNK_SIZE)
            for i, p in enumerate(cohort)
        )
        RunChunk.objects.bulk_create(RunChunk(run=run, index=i, dispatched_at=now) for i in range(run.chunks_total))
        # The commitment goes into the access log, and with the log's checkpoints onto the chain.
        _log(run, "research.run.freeze", query=f"cohort_root={run.cohort_root} size={len(cohort)} study={study.pk}")
    return list(range(run.chunks_total))


def cohort_inclusion(*, run: AnalysisRun, grant_id: str) -> dict[str, Any] | None:
    """A participant's inclusion proof in a run's cohort commitment, or None when not in it."""
    leaves = split_leaves(bytes(run.cohort_leaves))
    leaf = cohort_leaf(run_id=str(run.pk), grant_id=grant_id)
    if leaf not in leaves:
        return None
    index = leaves.index(leaf)
    return {
        "leaf": leaf.hex(),
        "index": index,
        "size": len(leaves),
        "path": [p.hex() for p in inclusion_path(leaves, index)],
        "root": run.cohort_root,
    }


def runs_reading(*, patient: Patient) -> Any:
    """The runs whose frozen cohort held this patient."""
    return AnalysisRun.objects.filter(Q(members__patient=patient)).select_related("study").distinct()
