"""NEWS2, the Royal College of Physicians' National Early Warning Score 2 (2017).

Source: Royal College of Physicians. National Early Warning Score (NEWS) 2:
Standardising the assessment of acute-illness severity in the NHS. London: RCP,
2017; chart 1 (the scoring system) and chart 2 (thresholds and triggers).

Seven parameters, each scored 0-3 on the chart's bands, summed (0-20):

| parameter | 3 | 2 | 1 | 0 | 1 | 2 | 3 |
|---|---|---|---|---|---|---|---|
| respiration rate /min | <=8 | | 9-11 | 12-20 | | 21-24 | >=25 |
| SpO2 scale 1 % | <=91 | 92-93 | 94-95 | >=96 | | | |
| SpO2 scale 2 % | <=83 | 84-85 | 86-87 | 88-92, >=93 on air | 93-94 on O2 | 95-96 on O2 | >=97 on O2 |
| air or oxygen | | oxygen | | air | | | |
| systolic BP mm Hg | <=90 | 91-100 | 101-110 | 111-219 | | | >=220 |
| pulse /min | <=40 | | 41-50 | 51-90 | 91-110 | 111-130 | >=131 |
| consciousness | | | | alert | | | new confusion, voice, pain, unresponsive |
| temperature C | <=35.0 | | 35.1-36.0 | 36.1-38.0 | 38.1-39.0 | >=39.1 | |

Clinical risk: 0-4 low; a score of 3 in any single parameter low-medium; 5-6
medium; 7 or more high. The chart's bands are whole numbers (temperature: one
decimal), so a value is rounded half up to that precision before banding.

Inputs, as Observations a clinician posts (status final, amended or corrected),
read as ONE observation set: each parameter's latest value in the last day
before the score date, and every one of them within WINDOW_MINUTES (60 by
default; `News2(window_minutes=...)`) of the newest; a parameter measured only
earlier than that is stale and the score is not given (the chart scores a set
of observations taken together, not values hours apart). NEWS2 is not for
children: the Patient's age on the score date must be 16 or more.
- respiration rate LOINC 9279-1 (/min); pulse LOINC 8867-4 (/min);
- SpO2 LOINC 59408-5 (pulse oximetry) or 2708-6 (arterial), in %;
- systolic pressure LOINC 8480-6 (mm[Hg]), alone or in a blood pressure panel;
- temperature LOINC 8310-5 (body) or 8331-1 (oral), in Cel or [degF];
- air or oxygen: the NHS NEWS2 FHIR code-only Observation, SNOMED CT
  722742002 |Breathing room air| or 371825009 |Patient on oxygen|; or LOINC
  3151-8 inhaled oxygen flow rate (L/min; 0 = air) or 3150-0 inhaled oxygen
  concentration (%; 21 or less = air). Not recorded = missing, never "air";
- consciousness (ACVPU): the NHS NEWS2 code SNOMED CT 1104441000000107 (or
  LOINC 67775-7, level of responsiveness) with a SNOMED CT answer from
  ACVPU_ANSWERS;
- SpO2 scale 2 is used only when declared: an active, confirmed Condition of
  hypercapnic respiratory failure (ICD-10-CM J96.02, J96.12, J96.22, J96.92),
  which is when the RCP chart reserves it (target saturation 88-92%).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from diagnostics.inference import base, values
from diagnostics.inference.base import Contribution, InputSpec, ModelResult, ModelSpec
from diagnostics.inference.values import ICD10CM, Absent, Reading, loinc, snomed

MODEL_ID = "news2"
VERSION = "1.0.0"
TITLE = "NEWS2 (RCP National Early Warning Score 2)"

LOOKBACK_DAYS = 1
WINDOW_MINUTES = 60
MINIMUM_AGE = 16
# What a measurement can plausibly be: outside these it is an entry or unit error, not a very sick patient.
PLAUSIBLE: dict[str, tuple[float, float, str]] = {
    "respiratory_rate": (1, 80, "/min"),
    "spo2": (50, 100, "%"),
    "systolic_bp": (40, 300, "mm Hg"),
    "pulse": (20, 300, "/min"),
    "temperature": (25.0, 45.0, "C"),
}
PER_MINUTE = {"/min": values.same, "{breaths}/min": values.same, "{beats}/min": values.same, "1/min": values.same}
PERCENT = {"%": values.same}
PRESSURE = {"mm[Hg]": values.same, "mmHg": values.same}
TEMPERATURE = {"Cel": values.same, "[degF]": lambda f: (f - 32.0) * 5.0 / 9.0}

ROOM_AIR = snomed("722742002")
ON_OXYGEN = snomed("371825009")
OXYGEN_FLOW = loinc("3151-8")
OXYGEN_CONCENTRATION = loinc("3150-0")
ROOM_AIR_FIO2_PERCENT = 21.0

ACVPU_CODES = (snomed("1104441000000107"), loinc("67775-7"))
ACVPU_ANSWERS: dict[str, str] = {
    "248234008": "A",  # mentally alert
    "130987000": "C",  # acute (new) confusion
    "300202002": "V",  # responds to voice
    "450847001": "P",  # responds to pain
    "422768004": "U",  # unresponsive
}
ACVPU_WORDS = {
    "A": "alert",
    "C": "new confusion",
    "V": "responds to voice",
    "P": "responds to pain",
    "U": "unresponsive",
}
HYPERCAPNIC_FAILURE = ("J96.02", "J96.12", "J96.22", "J96.92")


@dataclass(frozen=True)
class Band:
    low: float | None  # inclusive; None = no lower bound
    high: float | None  # inclusive; None = no upper bound
    points: int

    def holds(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def text(self, unit: str) -> str:
        if self.low is None:
            return f"<= {self.high:g} {unit}"
        if self.high is None:
            return f">= {self.low:g} {unit}"
        return f"{self.low:g}-{self.high:g} {unit}"


def _bands(*rows: tuple[float | None, float | None, int]) -> tuple[Band, ...]:
    return tuple(Band(low, high, points) for low, high, points in rows)


RESPIRATION = _bands((None, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, None, 3))
SPO2_SCALE_1 = _bands((None, 91, 3), (92, 93, 2), (94, 95, 1), (96, None, 0))
SPO2_SCALE_2_LOW = _bands((None, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0))
SPO2_SCALE_2_ON_OXYGEN = _bands((93, 94, 1), (95, 96, 2), (97, None, 3))
SYSTOLIC = _bands((None, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, None, 3))
PULSE = _bands((None, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2), (131, None, 3))
TEMPERATURE_BANDS = _bands((None, 35.0, 3), (35.1, 36.0, 1), (36.1, 38.0, 0), (38.1, 39.0, 1), (39.1, None, 2))

# RCP chart 2: clinical response to the risk band.
RESPONSES = {
    "low": "minimum 4-12 hourly observations; registered nurse to assess and decide on frequency and escalation",
    "low-medium": "minimum hourly observations; urgent ward-based response by a clinician to decide on escalation",
    "medium": "minimum hourly observations; urgent response: registered nurse to inform the medical team at once",
    "high": "continuous monitoring; emergency response by a team with critical care competencies",
}


def _limits(name: str) -> dict[str, Any]:
    low, high, unit = PLAUSIBLE[name]
    return {"unit": unit, "limits": (low, high), "limits_basis": "what can be measured"}


INPUTS = (
    InputSpec("patient", "Patient", (), None),
    InputSpec("respiratory_rate", "Observation", (loinc("9279-1"),), LOOKBACK_DAYS, **_limits("respiratory_rate")),
    InputSpec("spo2", "Observation", (loinc("59408-5"), loinc("2708-6")), LOOKBACK_DAYS, **_limits("spo2")),
    InputSpec(
        "supplemental_oxygen", "Observation", (ROOM_AIR, ON_OXYGEN, OXYGEN_FLOW, OXYGEN_CONCENTRATION), LOOKBACK_DAYS
    ),
    InputSpec("systolic_bp", "Observation", (loinc("8480-6"),), LOOKBACK_DAYS, **_limits("systolic_bp")),
    InputSpec("pulse", "Observation", (loinc("8867-4"),), LOOKBACK_DAYS, **_limits("pulse")),
    InputSpec("consciousness", "Observation", ACVPU_CODES, LOOKBACK_DAYS),
    InputSpec(
        "temperature", "Observation", (loinc("8310-5"), loinc("8331-1")), LOOKBACK_DAYS, **_limits("temperature")
    ),
    InputSpec(
        "hypercapnic_respiratory_failure",
        "Condition",
        tuple(f"{ICD10CM}|{code}" for code in HYPERCAPNIC_FAILURE),
        None,
        False,
    ),
)


def band_points(bands: Sequence[Band], value: float) -> Band:
    """The band of the chart that holds `value` (already rounded to the chart's precision)."""
    return next(band for band in bands if band.holds(value))


def spo2_points(spo2: float, *, scale: int, on_oxygen: bool) -> tuple[int, str]:
    """SpO2 points and the band's text, on scale 1 or scale 2."""
    if scale == 1:
        band = band_points(SPO2_SCALE_1, spo2)
        return band.points, f"scale 1: {band.text('%')}"
    if spo2 <= 92:
        band = band_points(SPO2_SCALE_2_LOW, spo2)
        return band.points, f"scale 2: {band.text('%')}"
    if not on_oxygen:
        return 0, "scale 2: >= 93 % on air"
    band = band_points(SPO2_SCALE_2_ON_OXYGEN, spo2)
    return band.points, f"scale 2: {band.text('%')} on oxygen"


def risk_band(total: int, parts: Sequence[int]) -> str:
    """RCP clinical risk: high >= 7, medium 5-6, low-medium for a single 3, else low."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    if 3 in parts:
        return "low-medium"
    return "low"


def _oxygen(node: dict[str, Any]) -> bool:
    token = values.first_match(node.get("code"), (ROOM_AIR, ON_OXYGEN, OXYGEN_FLOW, OXYGEN_CONCENTRATION))
    if token == ROOM_AIR:
        return False
    if token == ON_OXYGEN:
        return True
    if token == OXYGEN_FLOW:
        flow = values.quantity_reader({"L/min": values.same}, "L/min")(node)
        if flow < 0:
            raise values.Unusable("a negative oxygen flow is not a measurement")
        return flow > 0
    fio2 = values.quantity_reader(PERCENT, "%")(node)
    return fio2 > ROOM_AIR_FIO2_PERCENT


def _acvpu(node: dict[str, Any]) -> str:
    token = values.first_match(node.get("valueCodeableConcept"), [snomed(code) for code in ACVPU_ANSWERS])
    if token is None:
        raise values.Unusable("its answer is not an ACVPU finding (SNOMED CT)")
    return ACVPU_ANSWERS[token.rsplit("|", 1)[1]]


READERS: dict[str, tuple[Any, str]] = {
    "respiratory_rate": (values.quantity_reader(PER_MINUTE, "/min"), "respiration rate"),
    "spo2": (values.quantity_reader(PERCENT, "%"), "oxygen saturation"),
    "supplemental_oxygen": (_oxygen, "air or supplemental oxygen record"),
    "systolic_bp": (values.quantity_reader(PRESSURE, "mm[Hg]"), "systolic blood pressure"),
    "pulse": (values.quantity_reader(PER_MINUTE, "/min"), "pulse rate"),
    "consciousness": (_acvpu, "ACVPU consciousness assessment"),
    "temperature": (values.quantity_reader(TEMPERATURE, "Cel or [degF]"), "temperature"),
}


def _spec(window_minutes: int) -> ModelSpec:
    parameters = {
        "bands": [
            RESPIRATION,
            SPO2_SCALE_1,
            SPO2_SCALE_2_LOW,
            SPO2_SCALE_2_ON_OXYGEN,
            SYSTOLIC,
            PULSE,
            TEMPERATURE_BANDS,
        ],
        "acvpu": ACVPU_ANSWERS,
        "oxygen": [ROOM_AIR, ON_OXYGEN, OXYGEN_FLOW, OXYGEN_CONCENTRATION, ROOM_AIR_FIO2_PERCENT],
        "inputs": [vars(i) for i in INPUTS],
        "window_minutes": window_minutes,
        "minimum_age": MINIMUM_AGE,
        "plausible": PLAUSIBLE,
    }
    return ModelSpec(
        id=MODEL_ID,
        version=VERSION,
        version_hash=base.version_hash(
            model_id=MODEL_ID, version=VERSION, parameters=parameters, modules=[sys.modules[__name__], base, values]
        ),
        title=TITLE,
        intended_use=(
            "Scores a set of vital signs an adult clinician has just recorded on the RCP NEWS2 chart and gives the "
            "clinical risk band and the chart's response, to help recognise and escalate acute deterioration in "
            "adults (not in children or pregnancy). Scale 2 for oxygen saturation applies only where hypercapnic "
            f"respiratory failure is declared. {base.DECISION_SUPPORT}"
        ),
        purpose="TREAT",
        inputs=INPUTS,
        output_code=snomed("1104051000000101"),
        population="Adults and young people aged 16 or over, outside pregnancy.",
    )


class News2:
    """NEWS2 from the latest posted vital signs; each parameter's points are its contribution."""

    def __init__(self, *, window_minutes: int = WINDOW_MINUTES) -> None:
        if window_minutes <= 0:
            raise ValueError("the observation set's window must be a positive number of minutes")
        self.window = timedelta(minutes=window_minutes)
        self.spec = _spec(window_minutes)

    def run(self, inputs: Mapping[str, Sequence[dict[str, Any]]], *, as_of: date) -> ModelResult:
        readings: dict[str, Reading] = {}
        problems: list[Contribution] = self._patient_problems(inputs, as_of)
        for name, (read, what) in READERS.items():
            spec = self.spec.input(name)
            found = values.declared_quantity(inputs, spec, as_of=as_of, read=read, what=what, problems=problems)
            if found is not None:
                readings[name] = found
        problems.extend(self._set_problems(readings))
        if problems:
            return base.insufficient(TITLE, problems)
        declared = values.active_condition(
            inputs.get("hypercapnic_respiratory_failure", ()),
            codes=self.spec.input("hypercapnic_respiratory_failure").codes,
            as_of=as_of,
        )
        return self._score(readings, declared)

    @staticmethod
    def _patient_problems(inputs: Mapping[str, Sequence[dict[str, Any]]], as_of: date) -> list[Contribution]:
        patient = values.the_patient(inputs.get("patient", ()))
        if isinstance(patient, Absent):
            return [values.problem("patient", patient)]
        if values.deceased_by(patient, as_of):
            return [values.problem("patient", values.DECEASED)]
        age = values.age_at(patient, as_of)
        if isinstance(age, Absent):
            return [values.problem("age", age)]
        bad = values.out_of_range("age", age, (MINIMUM_AGE, 130), "years", "the ages NEWS2 is for (16 or over)")
        return [bad] if bad else []

    def _set_problems(self, readings: dict[str, Reading]) -> list[Contribution]:
        """Each reading outside the window before the newest one (implausible values were refused on reading)."""
        problems: list[Contribution] = []
        instants = [r.instant for r in readings.values() if r.instant is not None]
        newest = max(instants) if instants else None
        minutes = int(self.window.total_seconds() // 60)
        for name, reading in readings.items():
            if newest is not None and reading.instant is not None and reading.instant < newest - self.window:
                problems.append(
                    Contribution(
                        name,
                        None,
                        None,
                        f"the latest {READERS[name][1]} ({reading.source}, {reading.instant.isoformat()}) is more "
                        f"than {minutes} minutes before the newest vital sign ({newest.isoformat()}): not one "
                        "observation set",
                        kind="stale",
                        window_minutes=minutes,
                    )
                )
        return problems

    def _score(self, readings: dict[str, Reading], declared: Reading | None) -> ModelResult:
        on_oxygen = bool(readings["supplemental_oxygen"].value)
        scale = 2 if declared is not None else 1
        contributions: list[Contribution] = []

        def banded(name: str, bands: Sequence[Band], digits: int, unit: str, label: str) -> None:
            value = values.half_up(readings[name].value, digits)
            band = band_points(bands, value)
            contributions.append(
                Contribution(
                    name,
                    value,
                    float(band.points),
                    f"{label} {band.text(unit)} scores {band.points}" + _src(readings[name]),
                )
            )

        banded("respiratory_rate", RESPIRATION, 0, "/min", "respiration rate")
        spo2 = values.half_up(readings["spo2"].value)
        points, text = spo2_points(spo2, scale=scale, on_oxygen=on_oxygen)
        why_scale = f"; scale 2 because {declared.source} declares hypercapnic respiratory failure" if declared else ""
        contributions.append(
            Contribution(
                "spo2", spo2, float(points), f"SpO2 {text} scores {points}{why_scale}" + _src(readings["spo2"])
            )
        )
        contributions.append(
            Contribution(
                "supplemental_oxygen",
                "oxygen" if on_oxygen else "air",
                2.0 if on_oxygen else 0.0,
                ("on supplemental oxygen scores 2" if on_oxygen else "breathing air scores 0")
                + _src(readings["supplemental_oxygen"]),
            )
        )
        banded("systolic_bp", SYSTOLIC, 0, "mm Hg", "systolic pressure")
        banded("pulse", PULSE, 0, "/min", "pulse")
        level = readings["consciousness"].value
        contributions.append(
            Contribution(
                "consciousness",
                level,
                0.0 if level == "A" else 3.0,
                f"ACVPU {level} ({ACVPU_WORDS[level]}) scores {0 if level == 'A' else 3}"
                + _src(readings["consciousness"]),
            )
        )
        banded("temperature", TEMPERATURE_BANDS, 1, "C", "temperature")
        parts = [int(c.effect or 0) for c in contributions]
        total = sum(parts)
        risk = risk_band(total, parts)
        return ModelResult(
            status=base.SUCCEEDED,
            outputs={
                "score": total,
                "risk": risk,
                "spo2_scale": scale,
                "single_parameter_3": 3 in parts,
                "response": RESPONSES[risk],
            },
            contributions=tuple(contributions),
            missing=(),
            summary=f"NEWS2 score {total}: {risk} clinical risk (SpO2 scale {scale}).",
        )


def _src(reading: Reading) -> str:
    return f" ({reading.source}, {reading.day})"
