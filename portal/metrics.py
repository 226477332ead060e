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
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

# The diagnostics app's implementation of the equation, so the chart and the eGFR model agree to the digit.
from diagnostics.inference.egfr import egfr_ckd_epi_2021
from portal.units import UnitRefused, convert, parse_unit, quantity_unit

LOINC = "http://loinc.org"


@dataclass(frozen=True)
class Series:
    """One line of a chart: the LOINC codes whose values it plots (as the observation's code or a component's).

    `ucum` is the unit every value is converted to before it is plotted or compared; `decimals` the
    precision a person reads it at; `molar_mass` (g/mol) lets mmol/L and mg/dL meet for one analyte.
    """

    key: str
    label: str
    codes: tuple[str, ...]
    low: float | None = None  # the usual adult range; None means open on that side
    high: float | None = None
    ucum: str = ""
    decimals: int = 1
    molar_mass: float | None = None


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


# Cholesterol's molar mass bridges mmol/L (as European labs report) and mg/dL (38.67 mg/dL per mmol/L).
_CHOLESTEROL: dict[str, Any] = {"ucum": "mg/dL", "decimals": 0, "molar_mass": 386.65}
_TRIGLYCERIDES: dict[str, Any] = {"ucum": "mg/dL", "decimals": 0, "molar_mass": 885.7}
_CREATININE: dict[str, Any] = {"ucum": "mg/dL", "decimals": 2, "molar_mass": 113.12}  # 88.4 umol/L is 1 mg/dL

METRICS: tuple[Metric, ...] = (
    Metric(
        "blood-pressure",
        "Blood pressure",
        "mmHg",
        (
            Series("systolic", "Systolic (upper number)", ("8480-6",), 90, 120, ucum="mm[Hg]", decimals=0),
            Series("diastolic", "Diastolic (lower number)", ("8462-4",), 60, 80, ucum="mm[Hg]", decimals=0),
        ),
        "The pressure in your arteries when your heart beats (systolic) and between beats (diastolic). "
        "Below 120/80 is considered normal for adults.",
    ),
    Metric(
        "bmi",
        "Body mass index",
        "kg/m²",
        (Series("bmi", "BMI", ("39156-5",), 18.5, 25, ucum="kg/m2"),),
        "Weight divided by the square of height. 18.5 to 25 is the usual healthy range for adults.",
    ),
    Metric(
        "weight",
        "Weight",
        "kg",
        (Series("weight", "Body weight", ("29463-7",), ucum="kg"),),
        "Your body weight. A healthy weight depends on your height: see the BMI chart.",
    ),
    Metric(
        "cholesterol",
        "Cholesterol",
        "mg/dL",
        (
            Series("total", "Total cholesterol", ("2093-3",), None, 200, **_CHOLESTEROL),
            Series("ldl", "LDL (“bad”) cholesterol", ("18262-6", "13457-7", "2089-1"), None, 100, **_CHOLESTEROL),
            Series("hdl", "HDL (“good”) cholesterol", ("2085-9",), 40, None, **_CHOLESTEROL),
            Series("triglycerides", "Triglycerides", ("2571-8",), None, 150, **_TRIGLYCERIDES),
        ),
        "Fats in your blood. Lower total and LDL cholesterol and triglycerides, and higher HDL, mean a lower risk "
        "of heart disease.",
    ),
    Metric(
        "hba1c",
        "HbA1c",
        "%",
        (Series("hba1c", "HbA1c", ("4548-4",), None, 5.7, ucum="%"),),
        "Your average blood sugar over the last two to three months. Below 5.7% is normal; 5.7 to 6.4% is "
        "prediabetes; 6.5% or more suggests diabetes.",
    ),
    Metric(
        "creatinine",
        "Creatinine",
        "mg/dL",
        (Series("creatinine", "Creatinine", ("2160-0", "38483-4"), 0.6, 1.3, **_CREATININE),),
        "A waste product filtered out by your kidneys. A high value can mean your kidneys are not filtering well.",
    ),
    Metric(
        "egfr",
        "eGFR (kidney function)",
        "mL/min/1.73m²",
        (
            Series(
                "egfr",
                "eGFR reported by the laboratory",
                ("98979-8", "62238-1", "33914-3", "48642-3"),
                90,
                None,
                ucum="mL/min/{1.73_m2}",
                decimals=0,
            ),
        ),
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


def _holder(observation: dict[str, Any], series: Series) -> dict[str, Any] | None:
    """What holds the series' value: the observation itself, or the component with the series' code.

    Components are matched by code, never by position: Synthea lists diastolic before systolic.
    """
    wanted = set(series.codes)
    if _codes(observation.get("code")) & wanted and isinstance(observation.get("valueQuantity"), dict):
        return observation
    for component in observation.get("component", []) or []:
        if isinstance(component, dict) and _codes(component.get("code")) & wanted:
            return component
    return None


def series_value(observation: dict[str, Any], series: Series) -> float | None:
    """The observation's value for this series in the series' unit (None when absent or not convertible)."""
    holder = _holder(observation, series)
    if holder is None:
        return None
    try:
        return convert(holder.get("valueQuantity") or {}, series.ucum, molar_mass=series.molar_mass).value
    except UnitRefused:
        return None


def own_decimals(value: float | int) -> int:
    """How many decimals a recorded number carries (83.28015376396887 carries 14, 120 none)."""
    text = repr(value)
    if "e" in text or "E" in text or "." not in text:
        return 0
    return len(text.split(".", 1)[1].rstrip("0"))


def shown(value: float, decimals: int) -> str:
    """A number at a reading precision, halves rounded up as a lab report does: 136.5 at 0 decimals is "137"."""
    step = Decimal(1).scaleb(-decimals)
    return str(Decimal(repr(float(value))).quantize(step, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Point:
    at: str
    value: float  # in the series' unit, at its reading precision
    reference: str  # "Observation/<id>": the page links each point to the resource it came from
    exact: float | None = None  # the converted value before rounding
    recorded: str = ""  # the value and unit exactly as recorded
    flag: str = ""  # "H" above the range, "L" below it
    low: float | None = None  # the range the flag was judged against: the result's own, else the usual
    high: float | None = None
    own_range: bool = False


@dataclass(frozen=True)
class Refusal:
    at: str
    reference: str
    recorded: str
    reason: str


def _range_quantity(value: Any, series: Series) -> float | None:
    if not isinstance(value, dict):
        return None
    return convert(value, series.ucum, molar_mass=series.molar_mass).value


def own_range(holder: dict[str, Any], series: Series) -> tuple[float | None, float | None] | None:
    """The result's own reference range (Observation.referenceRange) in the series' unit, if it has a usable one."""
    for entry in holder.get("referenceRange", []) or []:
        if not isinstance(entry, dict) or entry.get("appliesTo") or entry.get("age"):
            continue  # a range for another population is not this patient's
        try:
            low, high = _range_quantity(entry.get("low"), series), _range_quantity(entry.get("high"), series)
        except UnitRefused:
            continue
        if low is not None or high is not None:
            return low, high
    return None


def flag(value: float, low: float | None, high: float | None) -> str:
    if high is not None and value > high:
        return "H"
    if low is not None and value < low:
        return "L"
    return ""


def recorded_text(quantity: Any) -> str:
    if not isinstance(quantity, dict):
        return ""
    return f"{quantity.get('value', '')} {quantity_unit(quantity)}".strip()


def measure(observations: list[dict[str, Any]], series: Series) -> tuple[list[Point], list[Refusal]]:
    """Every (time, value) of the series in its unit, oldest first, and each value that could not be converted."""
    found: dict[str, Point] = {}
    refused: dict[str, Refusal] = {}
    for observation in observations:
        if observation.get("status") == "entered-in-error":
            continue  # withdrawn by the lab: never plotted
        when = observation_when(observation)
        holder = _holder(observation, series)
        if when is None or holder is None:
            continue
        reference = f"Observation/{observation.get('id', '')}"
        quantity = holder.get("valueQuantity") or {}
        try:
            converted = convert(quantity, series.ucum, molar_mass=series.molar_mass)
        except UnitRefused as exc:
            refused[reference] = Refusal(when, reference, recorded_text(quantity), exc.message)
            continue
        decimals = series.decimals
        if parse_unit(converted.recorded_unit) == parse_unit(series.ucum):
            decimals = min(decimals, own_decimals(converted.recorded_value))
        ranged = own_range(holder, series)
        low, high = ranged if ranged is not None else (series.low, series.high)
        found[reference] = Point(
            at=when,
            value=float(shown(converted.value, decimals)),
            reference=reference,
            exact=converted.value,
            recorded=recorded_text(quantity),
            flag=flag(converted.value, low, high),
            low=low,
            high=high,
            own_range=ranged is not None,
        )
    return sorted(found.values(), key=lambda p: p.at), sorted(refused.values(), key=lambda r: r.at)


def points_for(observations: list[dict[str, Any]], series: Series) -> list[Point]:
    """Every (time, value) of the series in these observations, oldest first, one per observation."""
    return measure(observations, series)[0]


def series_for_code(code: str) -> Series | None:
    """The charted series a LOINC code belongs to (its unit, precision and usual range), if any."""
    for metric in METRICS:
        for item in metric.series:
            if code in item.codes:
                return item
    return None


def observation_flags(observation: dict[str, Any]) -> str:
    """H or L for an observation of a charted kind (both parts of a blood pressure are judged)."""
    flags = []
    for metric in METRICS:
        for item in metric.series:
            points = points_for([observation], item)
            if points and points[0].flag:
                flags.append(points[0].flag)
    return "H" if "H" in flags else ("L" if "L" in flags else "")


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
        creatinine = point.exact if point.exact is not None else point.value
        value = egfr_ckd_epi_2021(creatinine_mg_dl=creatinine, age=age, sex=sex)
        if math.isfinite(value):
            computed.append(Point(point.at, round(value), point.reference, exact=value, flag=flag(value, 90, None)))
    return computed


def _as_date(value: str) -> date | None:
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None
