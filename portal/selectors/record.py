"""The patient's record, read through consent.gate: timeline, charts, the health summary."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
from django.db.models import Count

from consent import gate
from portal.metrics import CREATININE, METRICS, Metric, Point, Refusal, egfr_from_creatinine, measure, points_for, shown
from portal.plain import (
    UNLABELLED,
    TimelineView,
    concept_text,
    resource_flag,
    resource_source,
    resource_title,
    resource_value,
    resource_when,
)
from records.models import Patient, Resource
from records.selectors import SEARCH_LIMIT_MAX, SearchCriteria


def _bodies(
    caller: gate.Caller,
    patient: Patient,
    resource_type: str,
    *,
    code: str | None = None,
    category: str | None = None,
    query: str = "",
) -> list[dict[str, Any]]:
    """Every matching resource, page by page through the gate (each page one access-log entry)."""
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = gate.resource_search(
            caller=caller,
            patient=patient,
            resource_type=resource_type,
            code=code,
            category=category,
            limit=SEARCH_LIMIT_MAX,
            offset=offset,
            query=query,
        )
        found.extend(orjson.loads(body) for body in page.bodies)
        if len(page.bodies) < SEARCH_LIMIT_MAX:
            return found
        offset += SEARCH_LIMIT_MAX


@dataclass(frozen=True)
class TimelineItem:
    when: str
    title: str
    value: str
    resource_type: str
    resource_id: str
    flag: str = ""
    source: str = ""


def record_sources(*, caller: gate.Caller, patient: Patient) -> list[str]:
    """The labels of the sources the record was imported from (each source brings a Patient resource of its own)."""
    bodies = _bodies(caller, patient, "Patient", query="Patient (where my records came from)")
    return sorted({resource_source(body) for body in bodies} - {UNLABELLED})


def timeline(*, caller: gate.Caller, patient: Patient, view: TimelineView) -> list[TimelineItem]:
    """One timeline tab, newest first."""
    query = f"{view.resource_type}?category={view.category}" if view.category else view.resource_type
    bodies = _bodies(caller, patient, view.resource_type, category=view.category, query=query)
    items = [
        TimelineItem(
            when=resource_when(body) or "",
            title=resource_title(body),
            value=resource_value(body),
            resource_type=view.resource_type,
            resource_id=str(body.get("id", "")),
            flag=resource_flag(body),
            source=resource_source(body),
        )
        for body in bodies
    ]
    return sorted(items, key=lambda item: item.when, reverse=True)


def record_counts(*, patient: Patient) -> dict[str, int]:
    """How many resources of each type the record holds (row counts: nothing is decrypted)."""
    rows = Resource.objects.filter(patient=patient).values("resource_type").annotate(n=Count("id"))
    return {row["resource_type"]: row["n"] for row in rows.order_by("resource_type")}


def _patient_demographics(caller: gate.Caller, patient: Patient) -> tuple[date | None, str | None]:
    bodies = _bodies(caller, patient, "Patient", query="Patient (for the eGFR equation: birth date and sex)")
    for body in bodies:
        try:
            born = date.fromisoformat(str(body.get("birthDate", ""))[:10])
        except ValueError:
            born = None
        return born, body.get("gender")
    return None, None


def _points_json(points: list[Point]) -> list[dict[str, object]]:
    return [
        {
            "x": p.at,
            "y": p.value,
            "ref": p.reference,
            "exact": p.exact,
            "recorded": p.recorded,
            "flag": p.flag,
            "low": p.low,
            "high": p.high,
            "own_range": p.own_range,
        }
        for p in points
    ]


def _refused_json(refused: list[Refusal]) -> list[dict[str, object]]:
    return [{"x": r.at, "ref": r.reference, "recorded": r.recorded, "reason": r.reason} for r in refused]


def _observations_coded(
    caller: gate.Caller, patient: Patient, codes: Iterable[str], query: str
) -> list[dict[str, Any]]:
    """Every Observation carrying any of the codes, in one search (one access-log entry per thousand)."""
    criteria = SearchCriteria(codes=(tuple(dict.fromkeys(codes)),))
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = gate.resource_search_counted(
            caller=caller,
            patient=patient,
            resource_type="Observation",
            criteria=criteria,
            limit=SEARCH_LIMIT_MAX,
            offset=offset,
            query=query,
        )
        found.extend(orjson.loads(body) for body in page.bodies)
        if len(page.bodies) < SEARCH_LIMIT_MAX:
            return found
        offset += SEARCH_LIMIT_MAX


def _chart(metric: Metric, bodies: list[dict[str, Any]], computed: list[Point]) -> dict[str, object]:
    series: list[dict[str, object]] = []
    for item in metric.series:
        points, refused = measure(bodies, item)
        series.append(
            {
                "key": item.key,
                "label": item.label,
                "low": item.low,
                "high": item.high,
                "points": _points_json(points),
                "refused": _refused_json(refused),
            }
        )
    if metric.derived_egfr:
        series.append(
            {
                "key": "egfr-computed",
                "label": "eGFR computed from your creatinine (CKD-EPI 2021)",
                "low": 90,
                "high": None,
                "points": _points_json(computed),
                "refused": [],
            }
        )
    return {"slug": metric.slug, "title": metric.title, "unit": metric.unit, "series": series}


def metric_charts(*, caller: gate.Caller, patient: Patient, metrics: Iterable[Metric]) -> list[dict[str, object]]:
    """Charts' data: each series' points (time, value, source resource) and its reference range.

    All the charts of a page come from one search (one entry in the patient's own access log),
    plus one read of the Patient resource when eGFR is computed from creatinine.
    """
    chosen = list(metrics)
    derived = any(m.derived_egfr for m in chosen)
    codes = [code for m in chosen for code in m.search_codes]
    if derived:
        codes += [f"http://loinc.org|{c}" for c in CREATININE.codes]
    titles = ", ".join(m.title for m in chosen)
    bodies = _observations_coded(caller, patient, codes, f"Observation (charts: {titles})")
    computed: list[Point] = []
    if derived:
        creatinine = points_for(bodies, CREATININE)
        if creatinine:
            born, sex = _patient_demographics(caller, patient)
            computed = egfr_from_creatinine(creatinine, birth_date=born, sex=sex)
    return [_chart(metric, bodies, computed) for metric in chosen]


@dataclass(frozen=True)
class Latest:
    """The newest value of one measurement, as the dashboard shows it."""

    label: str
    value: str
    unit: str
    flag: str
    when: str
    reference: str


@dataclass
class Health:
    latest: list[Latest]
    conditions: list[TimelineItem]
    medications: list[TimelineItem]
    immunizations_due: list[TimelineItem] = field(default_factory=list)


DUE_FORECASTS = {"due", "overdue"}


def _immunizations_due(caller: gate.Caller, patient: Patient) -> list[TimelineItem]:
    """Vaccines the record's ImmunizationRecommendations say are due or overdue (read only when there are any)."""
    if not Resource.objects.filter(patient=patient, resource_type="ImmunizationRecommendation").exists():
        return []
    due: list[TimelineItem] = []
    query = "ImmunizationRecommendation (dashboard: immunizations due)"
    for body in _bodies(caller, patient, "ImmunizationRecommendation", query=query):
        for item in body.get("recommendation", []) or []:
            if not isinstance(item, dict):
                continue
            forecast = {
                c.get("code") for c in (item.get("forecastStatus") or {}).get("coding", []) if isinstance(c, dict)
            }
            if not forecast & DUE_FORECASTS:
                continue
            dates = [d.get("value") for d in item.get("dateCriterion", []) or [] if isinstance(d, dict)]
            due.append(
                TimelineItem(
                    when=str(next((d for d in dates if isinstance(d, str)), "")),
                    title=concept_text((item.get("vaccineCode") or [None])[0]) or "A vaccine",
                    value="Overdue" if "overdue" in forecast else "Due",
                    resource_type="ImmunizationRecommendation",
                    resource_id=str(body.get("id", "")),
                )
            )
    return sorted(due, key=lambda i: i.when)


ACTIVE_CONDITION = {"active", "recurrence", "relapse"}


def _active(body: dict[str, Any]) -> bool:
    if body.get("resourceType") == "MedicationRequest":
        return body.get("status") == "active"
    status = body.get("clinicalStatus")
    codes = {c.get("code") for c in (status or {}).get("coding", []) if isinstance(c, dict)}
    return bool(codes & ACTIVE_CONDITION)


def _current(caller: gate.Caller, patient: Patient, resource_type: str, query: str) -> list[TimelineItem]:
    bodies = [b for b in _bodies(caller, patient, resource_type, query=query) if _active(b)]
    items = {
        resource_title(b): TimelineItem(
            when=resource_when(b) or "",
            title=resource_title(b),
            value="",
            resource_type=resource_type,
            resource_id=str(b.get("id", "")),
            source=resource_source(b),
        )
        for b in sorted(bodies, key=lambda b: resource_when(b) or "")
    }
    return sorted(items.values(), key=lambda item: item.title.lower())


def health_summary(*, caller: gate.Caller, patient: Patient) -> Health:
    """What the dashboard opens on: the newest value of each charted measurement with its flag, and what is active.

    Three searches (three entries in the patient's own log): the measurements, conditions, prescriptions.
    """
    codes = [code for m in METRICS for code in m.search_codes]
    bodies = _observations_coded(caller, patient, codes, "Observation (dashboard: latest measurements)")
    latest: list[Latest] = []
    for metric in METRICS:
        for item in metric.series:
            points = points_for(bodies, item)
            if points:
                newest = points[-1]
                value = shown(newest.value, item.decimals)
                latest.append(Latest(item.label, value, metric.unit, newest.flag, newest.at, newest.reference))
    return Health(
        latest=latest,
        conditions=_current(caller, patient, "Condition", "Condition (dashboard: active conditions)"),
        medications=_current(
            caller, patient, "MedicationRequest", "MedicationRequest (dashboard: active prescriptions)"
        ),
        immunizations_due=_immunizations_due(caller, patient),
    )


def metric_chart(*, caller: gate.Caller, patient: Patient, metric: Metric) -> dict[str, object]:
    """One chart's data (see metric_charts)."""
    return metric_charts(caller=caller, patient=patient, metrics=[metric])[0]
