"""The measurements the portal charts: which LOINC codes feed each chart, and the reference ranges drawn.

Pure data and pure functions (no database, no gate): portal.selectors reads the
observations through the gate and hands their JSON here to be turned into points.
Reference ranges are the usual adult ones a patient sees on a lab report; they are
drawn as a guide, and the page says they are not a diagnosis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

# The diagnostics app's implementation of the equation, so the chart and the eGFR model agree to the digit.
from diagnostics.inference.egfr import egfr_ckd_epi_2021

LOINC = "http://loinc.org"


@dataclass(frozen=True)
class Series:
    """One line of a chart: the LOINC codes whose values it plots (as the observation's code or a component's)."""

    key: str
    label: str
    codes: tuple[str, ...]
    low: float | None = None  # reference range; None means open on that side
    high: float | None = None


@dataclass(frozen=True)
class Metric:
    slug: str
    title: str
    unit: str
    series: tuple[Series, ...]
    explanation: str
    # eGFR: also computed from creatinine where no laboratory eGFR was reported.
    derived_egfr: bool = False

    @property
    def search_codes(self) -> tuple[str, ...]:
        """The "system|code" tokens to search: one per series code (a panel is found by its components)."""
        return tuple(dict.fromkeys(f"{LOINC}|{code}" for s in self.series for code in s.codes))


METRICS: tuple[Metric, ...] = (
    Metric(
        "blood-pressure",
        "Blood pressure",
        "mmHg",
        (
            Series("systolic", "Systolic (upper number)", ("8480-6",), 90, 120),
            Series("diastolic", "Diastolic (lower number)", ("8462-4",), 60, 80),
        ),
        "The pressure in your arteries when your heart beats (systolic) and between beats (diastolic). "
        "Below 120/80 is considered normal for adults.",
    ),
    Metric(
        "bmi",
        "Body mass index",
        "kg/m²",
        (Series("bmi", "BMI", ("39156-5",), 18.5, 25),),
        "Weight divided by the square of height. 18.5 to 25 is the usual healthy range for adults.",
    ),
    Metric(
        "weight",
        "Weight",
        "kg",
        (Series("weight", "Body weight", ("29463-7",)),),
        "Your body weight. A healthy weight depends on your height: see the BMI chart.",
    ),
    Metric(
        "cholesterol",
        "Cholesterol",
        "mg/dL",
        (
            Series("total", "Total cholesterol", ("2093-3",), None, 200),
            Series("ldl", "LDL (“bad”) cholesterol", ("18262-6", "13457-7", "2089-1"), None, 100),
            Series("hdl", "HDL (“good”) cholesterol", ("2085-9",), 40, None),
            Series("triglycerides", "Triglycerides", ("2571-8",), None, 150),
        ),
        "Fats in your blood. Lower total and LDL cholesterol and triglycerides, and higher HDL, mean a lower risk "
        "of heart disease.",
    ),
    Metric(
        "hba1c",
        "HbA1c",
        "%",
        (Series("hba1c", "HbA1c", ("4548-4",), None, 5.7),),
        "Your average blood sugar over the last two to three months. Below 5.7% is normal; 5.7 to 6.4% is "
        "prediabetes; 6.5% or more suggests diabetes.",
    ),
    Metric(
        "creatinine",
        "Creatinine",
        "mg/dL",
        (Series("creatinine", "Creatinine", ("2160-0", "38483-4"), 0.6, 1.3),),
        "A waste product filtered out by your kidneys. A high value can mean your kidneys are not filtering well.",
    ),
    Metric(
        "egfr",
        "eGFR (kidney function)",
        "mL/min/1.73m²",
        (Series("egfr", "eGFR reported by the laboratory", ("98979-8", "62238-1", "33914-3", "48642-3"), 90, None),),
        "How much blood your kidneys filter each minute, estimated from creatinine, age and sex. 90 or more is "
        "normal; below 60 for three months or more is chronic kidney disease.",
        derived_egfr=True,
    ),
)
METRICS_BY_SLUG = {m.slug: m for m in METRICS}
CREATININE = METRICS_BY_SLUG["creatinine"].series[0]


def observation_when(observation: dict[str, Any]) -> str | None:
    """The clinically relevant time of an observation, as its ISO string (date or dateTime)."""
    for key in ("effectiveDateTime", "effectiveInstant", "issued"):
        value = observation.get(key)
        if isinstance(value, str):
            return value
    period = observation.get("effectivePeriod")
    if isinstance(period, dict) and isinstance(period.get("start"), str):
        return str(period["start"])
    return None


def _codes(concept: Any) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {
        str(c["code"])
        for c in concept.get("coding", [])
        if isinstance(c, dict) and c.get("system") == LOINC and c.get("code")
    }


def _number(holder: dict[str, Any]) -> float | None:
    quantity = holder.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        return float(quantity["value"])
    return None


def series_value(observation: dict[str, Any], series: Series) -> float | None:
    """The observation's value for this series: its own value, or a component's (blood-pressure panels)."""
    wanted = set(series.codes)
    if _codes(observation.get("code")) & wanted:
        value = _number(observation)
        if value is not None:
            return value
    for component in observation.get("component", []) or []:
        if isinstance(component, dict) and _codes(component.get("code")) & wanted:
            return _number(component)
    return None


@dataclass(frozen=True)
class Point:
    at: str
    value: float
    reference: str  # "Observation/<id>": the page links each point to the resource it came from


def points_for(observations: list[dict[str, Any]], series: Series) -> list[Point]:
    """Every (time, value) of the series in these observations, oldest first, one per observation."""
    found: dict[str, Point] = {}
    for observation in observations:
        if observation.get("status") == "entered-in-error":
            continue  # withdrawn by the lab: never plotted
        when = observation_when(observation)
        value = series_value(observation, series)
        if when is None or value is None:
            continue
        reference = f"Observation/{observation.get('id', '')}"
        found[reference] = Point(when, value, reference)
    return sorted(found.values(), key=lambda p: p.at)


def age_on(birth_date: date, when: date) -> int:
    return when.year - birth_date.year - ((when.month, when.day) < (birth_date.month, birth_date.day))


def egfr_from_creatinine(points: list[Point], *, birth_date: date | None, sex: str | None) -> list[Point]:
    """eGFR by the race-free CKD-EPI 2021 equation for each creatinine value, when birth date and sex are known."""
    if birth_date is None or sex not in {"male", "female"}:
        return []
    computed = []
    for point in points:
        when = _as_date(point.at)
        if when is None:
            continue
        age = age_on(birth_date, when)
        if age < 18:
            continue  # the equation is for adults; children use another one
        value = egfr_ckd_epi_2021(creatinine_mg_dl=point.value, age=age, sex=sex)
        if math.isfinite(value):
            computed.append(Point(point.at, round(value, 1), point.reference))
    return computed


def _as_date(value: str) -> date | None:
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None
