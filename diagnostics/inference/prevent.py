"""10-year risk of cardiovascular disease: the AHA PREVENT base equations (race-free).

Source: Khan SS et al. Development and Validation of the American Heart
Association's PREVENT Equations. Circulation 2024;149:430-49. The coefficients
are data (coefficients/prevent-base-10y.json, with their source): sex-specific
logistic equations for total cardiovascular disease (ASCVD and heart failure),
ASCVD and heart failure, risk = exp(x) / (1 + exp(x)), where x adds coefficient
x term over centred and splined predictors (age per 10 years from 55, non-HDL
and HDL cholesterol in mmol/L, systolic pressure split at 110 mm Hg, BMI split
at 30 kg/m2, eGFR split at 60), diabetes, current smoking, antihypertensive and
statin use, and their interactions with age and treatment.

Inputs from FHIR:
- age and sex: Patient.birthDate (full date), Patient.gender (female | male);
  race is not used;
- total cholesterol 2093-3 and HDL 2085-9, mg/dL or mmol/L (last 3 years);
- systolic pressure 8480-6, alone or in a blood pressure panel (last year);
- BMI 39156-5 in kg/m2 (last 2 years);
- eGFR: the reported CKD-EPI 2021 eGFR of the latest serum creatinine, read as
  the eGFR model reads it (PREVENT was developed with CKD-EPI 2021);
- current smoking: tobacco smoking status 72166-2, as the PCE reads it;
- diabetes, antihypertensive use and statin use: the project's value sets
  (diabetes, antihypertensives, statins), as the PCE reads them;
- known cardiovascular disease stops the score: clinical ASCVD (ascvd-history)
  or heart failure (heart-failure), whatever the entry's clinical status.

Accepted ranges, as the preventr package (0.12.0) enforces them for PREVENT:
age 30-79, total cholesterol 130-320 mg/dL, HDL 20-100 mg/dL, systolic
90-180 mm Hg, BMI 18.5-39.9 kg/m2, eGFR 15-140 mL/min/1.73 m2. Outside them
the result is insufficient-data naming the input; values are never clamped.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from diagnostics.inference import base, egfr, values, valueset
from diagnostics.inference.ascvd import (
    ANTIHYPERTENSIVES,
    CHOLESTEROL_UNITS,
    DIABETES,
    ESTABLISHED_ASCVD,
    PRESSURE_UNITS,
    STATINS,
    smoking_reader,
)
from diagnostics.inference.base import Contribution, InputSpec, ModelResult, ModelSpec
from diagnostics.inference.values import Absent, Reading, loinc, snomed
from diagnostics.inference.valueset import value_set

MODEL_ID = "prevent-base-2024"
VERSION = "1.0.0"
TITLE = "10-year cardiovascular risk (AHA PREVENT base equations, 2024)"
COEFFICIENT_FILE = "prevent-base-10y.json"
HEART_FAILURE = "heart-failure"
OUTCOMES = ("total_cvd", "ascvd", "heart_failure")
OUTCOME_WORDS = {"total_cvd": "total cardiovascular disease", "ascvd": "ASCVD", "heart_failure": "heart failure"}

AGE_RANGE = (30, 79)
EGFR_RANGE = (15.0, 140.0)
LIPID_LOOKBACK_DAYS = 3 * 365
PRESSURE_LOOKBACK_DAYS = 365
BMI_LOOKBACK_DAYS = 2 * 365
SMOKING_LOOKBACK_DAYS = 3 * 365
BMI_UNITS = {"kg/m2": values.same, "kg/m^2": values.same}


def _accepts(low: float, high: float, unit: str) -> dict[str, Any]:
    return {"unit": unit, "limits": (low, high), "limits_basis": "the range the PREVENT equations accept"}


INPUTS = (
    InputSpec("patient", "Patient", (), None),
    InputSpec(
        "total_cholesterol", "Observation", (loinc("2093-3"),), LIPID_LOOKBACK_DAYS, **_accepts(130, 320, "mg/dL")
    ),
    InputSpec("hdl", "Observation", (loinc("2085-9"),), LIPID_LOOKBACK_DAYS, **_accepts(20, 100, "mg/dL")),
    InputSpec("systolic_bp", "Observation", (loinc("8480-6"),), PRESSURE_LOOKBACK_DAYS, **_accepts(90, 180, "mm Hg")),
    InputSpec("bmi", "Observation", (loinc("39156-5"),), BMI_LOOKBACK_DAYS, **_accepts(18.5, 39.9, "kg/m2")),
    egfr.INPUTS[1],  # serum creatinine, for the CKD-EPI 2021 eGFR
    InputSpec("smoking_status", "Observation", (loinc("72166-2"),), SMOKING_LOOKBACK_DAYS),
    InputSpec("antihypertensive", "MedicationRequest", (), None, False, value_set=ANTIHYPERTENSIVES),
    InputSpec("statin", "MedicationRequest", (), None, False, value_set=STATINS),
    InputSpec("diabetes", "Condition", (), None, False, value_set=DIABETES),
    InputSpec("established_ascvd", "Condition", (), None, False, value_set=ESTABLISHED_ASCVD),
    InputSpec("heart_failure", "Condition", (), None, False, value_set=HEART_FAILURE),
)

# Which input each term belongs to, for the contributions.
TERM_GROUPS = {
    "age": "age",
    "non_hdl_c": "non-HDL cholesterol",
    "hdl_c": "hdl",
    "sbp_lt_110": "systolic_bp",
    "sbp_gte_110": "systolic_bp",
    "dm": "diabetes",
    "smoking": "smoker",
    "bmi_lt_30": "bmi",
    "bmi_gte_30": "bmi",
    "egfr_lt_60": "egfr",
    "egfr_gte_60": "egfr",
    "bp_tx": "antihypertensive",
    "bp_tx_sbp_gte_110": "antihypertensive",
    "statin": "statin",
    "statin_non_hdl_c": "statin",
    "age_non_hdl_c": "age interactions",
    "age_hdl_c": "age interactions",
    "age_sbp_gte_110": "age interactions",
    "age_dm": "age interactions",
    "age_smoking": "age interactions",
    "age_bmi_gte_30": "age interactions",
    "age_egfr_lt_60": "age interactions",
    "constant": "constant",
}


@cache
def coefficients() -> dict[str, Any]:
    """The coefficient table shipped as coefficients/prevent-base-10y.json (read once per process)."""
    raw = (resources.files("diagnostics.inference") / "coefficients" / COEFFICIENT_FILE).read_text(encoding="utf-8")
    return dict(json.loads(raw))


def terms(
    *,
    age: float,
    total_cholesterol_mg_dl: float,
    hdl_mg_dl: float,
    sbp: float,
    bmi: float,
    egfr_ml_min: float,
    diabetes: bool,
    smoker: bool,
    antihypertensive: bool,
    statin: bool,
) -> dict[str, float]:
    """The base model's predictors, centred and splined as the equations define them."""
    to_mmol = float(coefficients()["mg_dl_to_mmol_l_cholesterol"])
    a = (age - 55.0) / 10.0
    non_hdl = (total_cholesterol_mg_dl - hdl_mg_dl) * to_mmol - 3.5
    hdl = (hdl_mg_dl * to_mmol - 1.3) / 0.3
    sbp_high = (max(sbp, 110.0) - 130.0) / 20.0
    bmi_high = (max(bmi, 30.0) - 30.0) / 5.0
    egfr_low = (min(egfr_ml_min, 60.0) - 60.0) / -15.0
    dm, smokes, bp_tx, on_statin = float(diabetes), float(smoker), float(antihypertensive), float(statin)
    return {
        "age": a,
        "non_hdl_c": non_hdl,
        "hdl_c": hdl,
        "sbp_lt_110": (min(sbp, 110.0) - 110.0) / 20.0,
        "sbp_gte_110": sbp_high,
        "dm": dm,
        "smoking": smokes,
        "bmi_lt_30": (min(bmi, 30.0) - 25.0) / 5.0,
        "bmi_gte_30": bmi_high,
        "egfr_lt_60": egfr_low,
        "egfr_gte_60": (max(egfr_ml_min, 60.0) - 90.0) / -15.0,
        "bp_tx": bp_tx,
        "statin": on_statin,
        "bp_tx_sbp_gte_110": bp_tx * sbp_high,
        "statin_non_hdl_c": on_statin * non_hdl,
        "age_non_hdl_c": a * non_hdl,
        "age_hdl_c": a * hdl,
        "age_sbp_gte_110": a * sbp_high,
        "age_dm": a * dm,
        "age_smoking": a * smokes,
        "age_bmi_gte_30": a * bmi_high,
        "age_egfr_lt_60": a * egfr_low,
        "constant": 1.0,
    }


def log_odds(outcome: str, sex: str, predictors: Mapping[str, float]) -> float:
    equation = coefficients()["equations"][outcome][sex]
    return sum(float(equation[term]) * value for term, value in predictors.items())


def risk(outcome: str, sex: str, predictors: Mapping[str, float]) -> float:
    """The 10-year probability (0-1) of `outcome` for `sex`, unrounded."""
    x = log_odds(outcome, sex, predictors)
    return math.exp(x) / (1.0 + math.exp(x))


def _spec() -> ModelSpec:
    parameters = {
        "coefficients": coefficients(),
        "ranges": [AGE_RANGE, EGFR_RANGE],
        "value_sets": [value_set(n) for n in (ANTIHYPERTENSIVES, STATINS, DIABETES, ESTABLISHED_ASCVD, HEART_FAILURE)],
        "inputs": [vars(i) for i in INPUTS],
    }
    return ModelSpec(
        id=MODEL_ID,
        version=VERSION,
        version_hash=base.version_hash(
            model_id=MODEL_ID,
            version=VERSION,
            parameters=parameters,
            modules=[sys.modules[__name__], base, values, valueset, egfr],
        ),
        title=TITLE,
        intended_use=(
            "Estimates the 10-year risk of total cardiovascular disease (atherosclerotic cardiovascular disease or "
            "heart failure), of ASCVD and of heart failure for adults aged 30 to 79 without known cardiovascular "
            "disease, from age, sex, cholesterol, blood pressure and its treatment, statin use, diabetes, smoking, "
            "BMI and kidney function, without race (AHA PREVENT base equations), to inform a primary-prevention "
            f"discussion. {base.DECISION_SUPPORT}"
        ),
        purpose="TREAT",
        inputs=INPUTS,
        # The outcome predicted: SNOMED CT 49601007 |Disorder of cardiovascular system|.
        output_code=snomed("49601007"),
        population=(
            "Adults aged 30 to 79 without known atherosclerotic cardiovascular disease or heart failure "
            "(primary prevention)."
        ),
        horizon_years=10,
    )


class PreventBase2024:
    """The PREVENT base equations; each input's share of the total-CVD log-odds is a contribution."""

    def __init__(self) -> None:
        self.spec = _spec()

    def run(self, inputs: Mapping[str, Sequence[dict[str, Any]]], *, as_of: date) -> ModelResult:
        problems: list[Contribution] = []
        age, sex = self._patient(inputs, as_of, problems)

        def observed(name: str, read: Any, what: str) -> Reading | None:
            return values.declared_quantity(
                inputs, self.spec.input(name), as_of=as_of, read=read, what=what, problems=problems
            )

        cholesterol = values.quantity_reader(CHOLESTEROL_UNITS, "mg/dL or mmol/L")
        tc = observed("total_cholesterol", cholesterol, "total cholesterol")
        hdl = observed("hdl", cholesterol, "HDL cholesterol")
        sbp = observed("systolic_bp", values.quantity_reader(PRESSURE_UNITS, "mm[Hg]"), "systolic blood pressure")
        bmi = observed("bmi", values.quantity_reader(BMI_UNITS, "kg/m2"), "body mass index")
        creatinine = observed(
            "creatinine", values.quantity_reader(egfr.CREATININE_UNITS, "mg/dL or umol/L"), "serum creatinine"
        )
        smoking = observed("smoking_status", smoking_reader, "tobacco smoking status")
        reported: int | None = None
        if creatinine is not None and isinstance(age, int) and isinstance(sex, str):
            reported = int(values.half_up(egfr.egfr_ckd_epi_2021(creatinine_mg_dl=creatinine.value, age=age, sex=sex)))
            outside = values.out_of_range(
                "egfr", reported, EGFR_RANGE, "mL/min/1.73 m2", "the range the PREVENT equations accept"
            )
            problems.extend([replace(outside, value=None)] if outside else [])
        problems.extend(self._known_cvd(inputs, as_of))
        if problems or not isinstance(age, int) or not isinstance(sex, str) or reported is None:
            return base.insufficient(TITLE, problems)
        if tc is None or hdl is None or sbp is None or bmi is None or smoking is None or creatinine is None:
            return base.insufficient(TITLE, problems)  # unreachable: each None added a problem above
        found = {
            name: values.matching_medication(inputs.get(name, ()), match=value_set(vs).match, as_of=as_of)
            for name, vs in (("antihypertensive", ANTIHYPERTENSIVES), ("statin", STATINS))
        }
        diabetes = values.matching_condition(inputs.get("diabetes", ()), match=value_set(DIABETES).match, as_of=as_of)
        predictors = terms(
            age=age,
            total_cholesterol_mg_dl=tc.value,
            hdl_mg_dl=hdl.value,
            sbp=sbp.value,
            bmi=bmi.value,
            egfr_ml_min=reported,
            diabetes=diabetes is not None,
            smoker=bool(smoking.value),
            antihypertensive=found["antihypertensive"] is not None,
            statin=found["statin"] is not None,
        )
        readings = {"tc": tc, "hdl": hdl, "sbp": sbp, "bmi": bmi, "creatinine": creatinine, "smoking": smoking}
        return self._result(sex, age, reported, predictors, readings, found, diabetes)

    @staticmethod
    def _patient(
        inputs: Mapping[str, Sequence[dict[str, Any]]], as_of: date, problems: list[Contribution]
    ) -> tuple[int | Absent, str | Absent]:
        patient = values.the_patient(inputs.get("patient", ()))
        if isinstance(patient, Absent):
            problems.append(values.problem("patient", patient))
            return patient, patient
        if values.deceased_by(patient, as_of):
            problems.append(values.problem("patient", values.DECEASED))
            return values.DECEASED, values.DECEASED
        age, sex = values.age_at(patient, as_of), values.sex_of(patient)
        for name, got in (("age", age), ("sex", sex)):
            if isinstance(got, Absent):
                problems.append(values.problem(name, got))
        if isinstance(age, int):
            bad = values.out_of_range("age", age, AGE_RANGE, "years", "the ages the PREVENT equations are for")
            problems.extend([bad] if bad else [])
        return age, sex

    @staticmethod
    def _known_cvd(inputs: Mapping[str, Sequence[dict[str, Any]]], as_of: date) -> list[Contribution]:
        """Clinical ASCVD or heart failure on record, whatever its status: PREVENT is for primary prevention."""
        found = []
        for name, vs, what in (
            ("established_ascvd", ESTABLISHED_ASCVD, "clinical ASCVD"),
            ("heart_failure", HEART_FAILURE, "heart failure"),
        ):
            held = values.matching_condition(inputs.get(name, ()), match=value_set(vs).match, as_of=as_of, history=True)
            if held is not None:
                found.append(
                    Contribution(
                        name,
                        held.value,
                        None,
                        f"{held.source} ({held.value}, recorded {held.day}) is {what}, whatever its clinical status: "
                        "the PREVENT equations are for people without known cardiovascular disease",
                        kind="excluded",
                    )
                )
        return found

    @staticmethod
    def _result(
        sex: str,
        age: int,
        reported_egfr: int,
        predictors: dict[str, float],
        readings: dict[str, Reading],
        found: dict[str, Reading | None],
        diabetes: Reading | None,
    ) -> ModelResult:
        percents = {outcome: values.half_up(risk(outcome, sex, predictors) * 100.0, 1) for outcome in OUTCOMES}
        equation = coefficients()["equations"]["total_cvd"][sex]
        effects: dict[str, float] = {}
        for term, value in predictors.items():
            group = TERM_GROUPS[term]
            effects[group] = effects.get(group, 0.0) + float(equation[term]) * value
        tc, hdl, sbp, bmi = readings["tc"], readings["hdl"], readings["sbp"], readings["bmi"]
        creatinine, smoking = readings["creatinine"], readings["smoking"]
        treated, statin = found["antihypertensive"], found["statin"]
        rules = {
            "age": (age, f"{sex}, age {age} at the score date: (age - 55) / 10"),
            "non-HDL cholesterol": (
                round(tc.value - hdl.value, 1),
                f"total {tc.value:g} mg/dL ({tc.source}, {tc.day}) minus HDL, x 0.02586 to mmol/L, minus 3.5",
            ),
            "hdl": (round(hdl.value, 1), f"{hdl.value:g} mg/dL from {hdl.source} ({hdl.day})"),
            "systolic_bp": (round(sbp.value, 1), f"{sbp.value:g} mm Hg from {sbp.source} ({sbp.day}), split at 110"),
            "diabetes": (diabetes is not None, f"active {diabetes.source} ({diabetes.value})" if diabetes else "none"),
            "smoker": (smoking.value, f"{'current' if smoking.value else 'not a current'} smoker per {smoking.source}"),
            "bmi": (round(bmi.value, 1), f"{bmi.value:g} kg/m2 from {bmi.source} ({bmi.day}), split at 30"),
            "egfr": (
                reported_egfr,
                f"CKD-EPI 2021 eGFR {reported_egfr} from creatinine {creatinine.value:.3g} mg/dL ({creatinine.source}, "
                f"{creatinine.day}), split at 60",
            ),
            "antihypertensive": (
                treated is not None,
                f"active {treated.source} ({treated.value})" if treated else "no active antihypertensive on record",
            ),
            "statin": (
                statin is not None,
                f"active {statin.source} ({statin.value})" if statin else "no statin on record",
            ),
            "age interactions": (None, "age x non-HDL, HDL, systolic pressure, diabetes, smoking, BMI and low eGFR"),
            "constant": (None, f"the {sex} total-CVD equation's constant"),
        }
        equations = Contribution(
            "equations",
            sex,
            None,
            "logistic: risk = 1 / (1 + exp(-log-odds)); effects are the total-CVD equation's; ASCVD and heart "
            "failure use their own coefficients on the same inputs; race is not used",
        )
        contributions = (
            *(
                Contribution(group, rules[group][0], round(effect, 6), rules[group][1])
                for group, effect in effects.items()
            ),
            equations,
        )
        summary = ", ".join(f"{OUTCOME_WORDS[o]} {percents[o]:.1f}%" for o in OUTCOMES)
        return ModelResult(
            status=base.SUCCEEDED,
            outputs={
                "risk_10y_percent": percents["total_cvd"],
                "ascvd_10y_percent": percents["ascvd"],
                "heart_failure_10y_percent": percents["heart_failure"],
                "egfr_ml_min_1_73m2": reported_egfr,
                "treated_hypertension": treated is not None,
                "statin": statin is not None,
            },
            contributions=contributions,
            missing=(),
            sources=tuple(r.source for r in readings.values()),
            summary=f"Estimated 10-year risk: {summary} (AHA PREVENT base equations, without race).",
        )
