"""Compute to data: freeze a run's cohort, commit to it, read each participant through the gate in chunks,
combine per-chunk sufficient statistics, apply disclosure control, release after the output check.

Each participant is read under their own grant, as the study's account, with the run's id as the
job id: one gated read per resource query, each in the access log. A participant whose grant ended
(withdrawn, expired) is denied by the gate at that read and skipped. Nothing per-participant leaves
a chunk: the chunk stores sums (and, for the dominance rule, its two largest values, cleared once
the chunks are combined).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date
from typing import Any

import numpy as np
import orjson
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from audit.merkle import inclusion_path, leaf_hash, merkle_root, split_leaves
from audit.models import AccessLogAnchor, AccessLogCheckpoint, Outcome
from audit.services import LogEvent, access_log_append
from consent.gate import Caller, SearchCriteria, resource_read, resource_search_counted
from consent.models import GrantStatus
from consent.purposes import Action, Purpose
from healthledger.errors import KeyDestroyed, ResourceNotFound
from records.models import Patient
from research import catalogue, disclosure
from research.incidence import onset_of
from research.models import (
    AnalysisRun,
    Participation,
    Release,
    ReleaseStatus,
    RunChunk,
    RunMember,
    RunStatus,
    Study,
)

logger = logging.getLogger(__name__)

CHUNK_SIZE = 50
PAGE = 500
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


def _log(run: AnalysisRun, action: str, *, outcome: str = Outcome.PERMIT, query: str = "", reason: str = "") -> None:
    access_log_append(
        event=LogEvent(
            actor=f"job:{run.pk}",
            action=action,
            outcome=outcome,
            purpose=Purpose.HRESCH,
            job_id=str(run.pk),
            query=query,
            reason=reason,
        )
    )


def _end(run: AnalysisRun, status: str, reason: str, report: dict[str, Any] | None = None) -> None:
    run.status = status
    run.status_reason = reason[:255]
    run.report = report if report is not None else run.report
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "status_reason", "report", "result", "finished_at", "cohort_size"])
    _log(run, f"research.run.{status}", outcome=Outcome.PERMIT if status == RunStatus.SUCCEEDED else Outcome.DENY,
         query=f"study={run.study_id} run={run.pk}", reason=reason)  # fmt: skip


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


def _participant(caller: Caller, patient: Patient, analysis: Any, params: dict[str, Any], study: Study, as_of: date
                 ) -> catalogue.Participant:  # fmt: skip
    """Read one participant through the gate (raises ResourceNotFound on a deny) into memory.

    The Patient resource (age, sex) is read only when the analysis or the eligibility needs it, or when
    nothing else would be read: every participant is read at least once, so the gate decides for each.
    """
    eligibility = study.spec.get("eligibility", {})
    reads = analysis.reads(params)
    resource: dict[str, Any] = {}
    if (
        analysis.person(params)
        or eligibility.get("age")
        or eligibility.get("sex")
        or not (reads or eligibility.get("conditions"))
    ):
        body = resource_read(caller=caller, patient=patient, resource_type="Patient", resource_id=patient.fhir_id,
                             action=Action.RUN_ANALYSIS)  # fmt: skip
        resource = orjson.loads(body)
    codes = {c for kind, cs in reads if kind == "Condition" for c in cs} | set(eligibility.get("conditions", []))
    conditions: set[str] = set()
    onsets: dict[str, str] = {}
    if codes:
        for item in _search(caller, patient, "Condition", tuple(sorted(codes))):
            coded = {f"{c.get('system')}|{c.get('code')}" for c in item.get("code", {}).get("coding", [])}
            conditions |= coded
            onset = onset_of(item)
            for code in coded & codes:
                # The first dated onset of each code read; "" only while no record of it carries a date.
                known = onsets.get(code, "")
                onsets[code] = min(d for d in (known, onset) if d) if known or onset else ""
    observations: list[dict[str, Any]] = []
    for resource_type, obs_codes in reads:
        if resource_type == "Observation":
            observations.extend(_search(caller, patient, "Observation", obs_codes))
    # An analysis running a diagnostic model keeps the model's inputs whole, only in this worker's memory.
    kept: list[dict[str, Any]] = [resource] if resource else []
    for resource_type, kept_codes in getattr(analysis, "searches", lambda _: [])(params):
        kept.extend(_search(caller, patient, resource_type, kept_codes))
    return catalogue.Participant(
        age=catalogue.age_on(resource.get("birthDate", ""), as_of),
        sex=str(resource["gender"]) if resource.get("gender") in catalogue.SEXES else "unknown",
        conditions=frozenset(conditions),
        observations=tuple(observations),
        onsets=tuple(sorted(onsets.items())),
        resources=tuple(kept) if hasattr(analysis, "searches") else (),
    )


def _search(caller: Caller, patient: Patient, resource_type: str, codes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every resource of the type carrying one of the codes; with no codes, every resource of the type."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = resource_search_counted(
            caller=caller,
            patient=patient,
            resource_type=resource_type,
            criteria=SearchCriteria(codes=(codes,) if codes else ()),
            limit=PAGE,
            offset=offset,
            query=f"{resource_type}?code={','.join(codes)}" if codes else f"{resource_type}?",
            action=Action.RUN_ANALYSIS,
        )
        out.extend(orjson.loads(body) for body in page.bodies)
        if len(page.bodies) < PAGE:
            return out
        offset += PAGE


def _eligible(who: catalogue.Participant, eligibility: dict[str, Any]) -> bool:
    band = eligibility.get("age")
    if band and (who.age is None or not band[0] <= who.age <= band[1]):
        return False
    if eligibility.get("sex") and who.sex not in eligibility["sex"]:
        return False
    return all(code in who.conditions for code in eligibility.get("conditions", []))


def _round_params(run: AnalysisRun) -> dict[str, Any]:
    """The run's params, with the current round's coefficients for an analysis fitted over rounds."""
    if run.iteration and "beta" in run.iteration:
        return {**run.params, "beta": run.iteration["beta"]}
    return dict(run.params)


def analysis_chunk_run(*, run_id: str, index: int, round_no: int = 0) -> bool:
    """Read one chunk's participants and store its sums. Returns True when this was the last chunk to finish.

    `round_no`: the round of an analysis fitted over several (logistic regression); a message of an
    earlier round, redelivered late, does nothing.
    """
    run = AnalysisRun.objects.select_related("study", "study__account").get(pk=run_id)
    chunk = RunChunk.objects.get(run=run, index=index)
    if chunk.done or run.status != RunStatus.RUNNING or chunk.round != round_no:
        return False
    analysis = catalogue.analysis_get(run.analysis_id)
    caller = Caller(actor=run.study.account, purpose=Purpose.HRESCH, job_id=str(run.pk))
    params = _round_params(run)
    acc = analysis.empty(params)
    acc["eligible"], acc["read"] = 0, 0
    as_of = timezone.now().date()
    members = RunMember.objects.filter(run=run, chunk=index).select_related("patient").order_by("pk")
    for member in members:
        try:
            who = _participant(caller, member.patient, analysis, params, run.study, as_of)
        except (ResourceNotFound, KeyDestroyed):
            continue  # consent ended since the freeze (the gate logged the deny), or the record was erased
        acc["read"] += 1
        if not _eligible(who, run.study.spec.get("eligibility", {})):
            continue  # eligibility is decided here, after opt-in, and never leaves the worker
        acc["eligible"] += 1
        analysis.contribute(acc, who, params)
    with transaction.atomic():
        # Locks the chunk row: a redelivered chunk must not store its sums twice (nor into another round).
        locked = RunChunk.objects.select_for_update().get(pk=chunk.pk)
        if locked.done or locked.round != round_no:
            return False
        locked.partial, locked.done = acc, True
        locked.save(update_fields=["partial", "done"])
        return not RunChunk.objects.filter(run=run, done=False).exists()


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
