"""Read one chunk of a run's frozen cohort, each participant through the gate, into sufficient statistics.

Each participant is read under their own grant, as the study's account, with the run's id as the
job id: the chunk's participants go through the gate together (consent.gate.cohort_read), which
decides for each on their own grant and writes one access-log entry per participant read, naming
every version served. A participant whose grant ended (withdrawn, expired) is denied by the gate
and skipped. Nothing per-participant leaves a chunk: the chunk stores sums (and, for the dominance
rule, its two largest values, cleared once the chunks are combined).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from consent.gate import Caller, CohortQuery, CohortRecord, cohort_read
from consent.purposes import Action, Purpose
from research import catalogue
from research.incidence import onset_of
from research.models import AnalysisRun, RunChunk, RunMember, RunStatus

# What each query of a chunk's plan is for: conditions present (and their onsets), observations, whole resources.
CONDITIONS, OBSERVATIONS, KEPT = "conditions", "observations", "kept"
Plan = tuple[bool, tuple[tuple[str, CohortQuery], ...]]


def _plan(analysis: Any, params: dict[str, Any], eligibility: dict[str, Any]) -> Plan:
    """Whether to read the Patient resource, and the queries to ask of every participant's record.

    The Patient resource (age, sex) is read only when the analysis or the eligibility needs it, or when
    nothing else would be read: every participant is read at least once, so the gate decides for each.
    """
    reads = analysis.reads(params)
    person = bool(
        analysis.person(params)
        or eligibility.get("age")
        or eligibility.get("sex")
        or not (reads or eligibility.get("conditions"))
    )
    codes = {c for kind, cs in reads if kind == "Condition" for c in cs} | set(eligibility.get("conditions", []))
    planned: list[tuple[str, CohortQuery]] = []
    if codes:
        planned.append((CONDITIONS, CohortQuery("Condition", tuple(sorted(codes)))))
    planned += [(OBSERVATIONS, CohortQuery("Observation", tuple(cs))) for kind, cs in reads if kind == "Observation"]
    # An analysis running a diagnostic model keeps the model's inputs whole, only in this worker's memory.
    planned += [
        (KEPT, CohortQuery(kind, tuple(cs))) for kind, cs in getattr(analysis, "searches", lambda _: [])(params)
    ]
    return person, tuple(planned)


def _conditions(items: list[dict[str, Any]], codes: set[str]) -> tuple[set[str], dict[str, str]]:
    """The codes present, and the first dated onset of each code read ("" only while none carries a date)."""
    present: set[str] = set()
    onsets: dict[str, str] = {}
    for item in items:
        coded = {f"{c.get('system')}|{c.get('code')}" for c in item.get("code", {}).get("coding", [])}
        present |= coded
        onset = onset_of(item)
        for code in coded & codes:
            known = onsets.get(code, "")
            onsets[code] = min(d for d in (known, onset) if d) if known or onset else ""
    return present, onsets


def _participant(record: CohortRecord, plan: Plan, as_of: date, keeps: bool) -> catalogue.Participant:
    """One participant's record as the gate served it, held in memory only while the chunk runs."""
    resource: dict[str, Any] = orjson.loads(record.patient) if record.patient is not None else {}
    conditions: set[str] = set()
    onsets: dict[str, str] = {}
    observations: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = [resource] if resource else []
    for (role, query), bodies in zip(plan[1], record.found, strict=True):
        items = [orjson.loads(body) for body in bodies]
        if role == CONDITIONS:
            conditions, onsets = _conditions(items, set(query.codes))
        elif role == OBSERVATIONS:
            observations.extend(items)
        else:
            kept.extend(items)
    return catalogue.Participant(
        age=catalogue.age_on(resource.get("birthDate", ""), as_of),
        sex=str(resource["gender"]) if resource.get("gender") in catalogue.SEXES else "unknown",
        conditions=frozenset(conditions),
        observations=tuple(observations),
        onsets=tuple(sorted(onsets.items())),
        resources=tuple(kept) if keeps else (),
    )


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


def _chunk_sums(run: AnalysisRun, index: int) -> dict[str, Any]:
    """Read the chunk's participants through the gate, together, and add the eligible ones to the sums."""
    analysis = catalogue.analysis_get(run.analysis_id)
    params = _round_params(run)
    eligibility = run.study.spec.get("eligibility", {})
    plan = _plan(analysis, params, eligibility)
    acc = analysis.empty(params)
    acc["eligible"], acc["read"] = 0, 0
    members = list(RunMember.objects.filter(run=run, chunk=index).select_related("patient").order_by("pk"))
    caller = Caller(actor=run.study.account, purpose=Purpose.HRESCH, job_id=str(run.pk))
    records = cohort_read(caller=caller, patients=[m.patient for m in members], queries=[q for _, q in plan[1]],
                          patient_resource=plan[0], action=Action.RUN_ANALYSIS)  # fmt: skip
    as_of, keeps = timezone.now().date(), hasattr(analysis, "searches")
    for member in members:
        record = records.get(member.patient_id)
        if record is None:
            continue  # consent ended since the freeze (the gate logged the deny), or the record was erased
        who = _participant(record, plan, as_of, keeps)
        acc["read"] += 1
        if not _eligible(who, eligibility):
            continue  # eligibility is decided here, after opt-in, and never leaves the worker
        acc["eligible"] += 1
        analysis.contribute(acc, who, params)
    return acc


def analysis_chunk_run(*, run_id: str, index: int, round_no: int = 0) -> bool:
    """Read one chunk's participants and store its sums. Returns True when this was the last chunk to finish.

    `round_no`: the round of an analysis fitted over several (logistic regression); a message of an
    earlier round, redelivered late, does nothing.
    """
    run = AnalysisRun.objects.select_related("study", "study__account").get(pk=run_id)
    chunk = RunChunk.objects.get(run=run, index=index)
    if chunk.done or run.status != RunStatus.RUNNING or chunk.round != round_no:
        return False
    acc = _chunk_sums(run, index)
    with transaction.atomic():
        # Locks the chunk row: a redelivered chunk must not store its sums twice (nor into another round).
        locked = RunChunk.objects.select_for_update().get(pk=chunk.pk)
        if locked.done or locked.round != round_no:
            return False
        locked.partial, locked.done = acc, True
        locked.save(update_fields=["partial", "done"])
        return not RunChunk.objects.filter(run=run, done=False).exists()
