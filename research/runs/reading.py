"""Read one chunk of a run's frozen cohort, each participant through the gate, into sufficient statistics.

Each participant is read under their own grant, as the study's account, with the run's id as the
job id: one gated read per resource query, each in the access log. A participant whose grant ended
(withdrawn, expired) is denied by the gate at that read and skipped. Nothing per-participant leaves
a chunk: the chunk stores sums (and, for the dominance rule, its two largest values, cleared once
the chunks are combined).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from consent.gate import Caller, SearchCriteria, resource_read, resource_search_counted
from consent.purposes import Action, Purpose
from healthledger.errors import KeyDestroyed, ResourceNotFound
from records.models import Patient
from research import catalogue
from research.incidence import onset_of
from research.models import AnalysisRun, RunChunk, RunMember, RunStatus, Study

PAGE = 500


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
