"""10-year risk of a first hard ASCVD event: the ACC/AHA 2013 Pooled Cohort Equations.

Source: Goff DC Jr et al. 2013 ACC/AHA Guideline on the Assessment of
Cardiovascular Risk. Circulation 2014;129(suppl 2):S49-S73, Table A (the
coefficients, the group mean of the individual sum, the baseline survival at 10
years and a worked example). Risk = 1 - S10 ** exp(individual sum - group mean),
where the individual sum adds coefficient x term over ln(age), ln(total
cholesterol), ln(HDL), ln(systolic pressure, treated or not), current smoking,
diabetes and their interactions with ln(age).

Inputs from FHIR:
- age and sex: Patient.birthDate (a full date), Patient.gender (female | male);
- race: the us-core-race extension. An OMB category 2054-5 (Black or African
  American) selects the African American equations; any other race, or none
  recorded, the white equations, as the guideline advises for other groups;
- total cholesterol 2093-3 and HDL 2085-9 in mg/dL (mmol/L converted: x 38.67);
- systolic pressure 8480-6, alone or as a component of a blood pressure panel
  (85354-9, or 55284-4 as Synthea writes it), in mm[Hg];
- treated hypertension: an active MedicationRequest for a drug on
  ANTIHYPERTENSIVES (RxNorm; the ingredients and the clinical drugs seen in
  Synthea records and the project's demo records). None on record = untreated;
- diabetes: an active Condition on DIABETES (SNOMED CT, type 1 and 2 and the
  Synthea complication codes). Prediabetes is not diabetes and does not count;
- current smoker: the latest tobacco smoking status 72166-2; its answer must
  be one of SMOKING_ANSWERS (an unknown status is missing, never "non-smoker");
- established ASCVD: an active Condition on ESTABLISHED_ASCVD (myocardial
  infarction, coronary heart disease, stroke, peripheral arterial disease)
  stops the score: the equations are for primary prevention only.

The equations were derived for ages 40 to 79, total cholesterol 130-320 mg/dL,
HDL 20-100 mg/dL and systolic pressure 90-200 mm Hg: outside these the result
is insufficient-data naming the input (values are never clamped).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from diagnostics.inference import base, values, valueset
from diagnostics.inference.ascvd.equations import EQUATIONS, TERM_GROUPS, category_of, race_rule
from diagnostics.inference.base import Contribution, InputSpec, ModelResult, ModelSpec
from diagnostics.inference.values import Absent, Reading, loinc, snomed
from diagnostics.inference.valueset import value_set

MODEL_ID = "ascvd-pce-2013"
VERSION = "1.0.0"
TITLE = "10-year ASCVD risk (ACC/AHA 2013 Pooled Cohort Equations)"

MG_DL_PER_MMOL_L_CHOLESTEROL = 38.67
CHOLESTEROL_UNITS = {"mg/dL": values.same, "mmol/L": lambda v: v * MG_DL_PER_MMOL_L_CHOLESTEROL}
PRESSURE_UNITS = {"mm[Hg]": values.same, "mmHg": values.same}

AGE_RANGE = (40, 79)
TOTAL_CHOLESTEROL_RANGE = (130.0, 320.0)
HDL_RANGE = (20.0, 100.0)
SYSTOLIC_RANGE = (90.0, 200.0)

LIPID_LOOKBACK_DAYS = 3 * 365
PRESSURE_LOOKBACK_DAYS = 365
SMOKING_LOOKBACK_DAYS = 3 * 365

AFRICAN_AMERICAN = "2054-5"
BP_PANELS = (loinc("85354-9"), loinc("55284-4"))

# Diagnoses and drugs are recognised by value sets shipped as data files (valuesets/*.json, each with its
# source and date): ICD-10-CM ranges, SNOMED CT lists, RxNorm ingredients and clinical drugs by class.
ANTIHYPERTENSIVES = "antihypertensives"
STATINS = "statins"
DIABETES = "diabetes"
ESTABLISHED_ASCVD = "ascvd-history"
LDL_CODES = (loinc("13457-7"), loinc("18262-6"), loinc("2089-1"))
LDL_STATIN_THRESHOLD = 190.0
LIPID_WARNING_DAYS = 365
STATIN_DIABETES_AGES = (40, 75)
# 72166-2 answers (SNOMED CT, the CDC/US Core smoking status value set): True = current smoker.
SMOKING_ANSWERS: dict[str, bool] = {
    "449868002": True,  # current every day smoker
    "428041000124106": True,  # current some day smoker
    "77176002": True,  # smoker, current status unknown (a current smoker of unknown frequency)
    "428071000124103": True,  # current heavy tobacco smoker
    "428061000124105": True,  # current light tobacco smoker
    "8517006": False,  # former smoker
    "266919005": False,  # never smoker
}


def _derived(limits: tuple[float, float, str]) -> dict[str, Any]:
    return {"unit": limits[2], "limits": limits[:2], "limits_basis": "the range the equations were derived on"}


TC_LIMITS = (*TOTAL_CHOLESTEROL_RANGE, "mg/dL")
HDL_LIMITS = (*HDL_RANGE, "mg/dL")
SBP_LIMITS = (*SYSTOLIC_RANGE, "mm Hg")

INPUTS = (
    InputSpec("patient", "Patient", (), None),
    InputSpec("total_cholesterol", "Observation", (loinc("2093-3"),), LIPID_LOOKBACK_DAYS, **_derived(TC_LIMITS)),
    InputSpec("hdl", "Observation", (loinc("2085-9"),), LIPID_LOOKBACK_DAYS, **_derived(HDL_LIMITS)),
    InputSpec("systolic_bp", "Observation", (loinc("8480-6"),), PRESSURE_LOOKBACK_DAYS, **_derived(SBP_LIMITS)),
    InputSpec("antihypertensive", "MedicationRequest", (), None, False, value_set=ANTIHYPERTENSIVES),
    InputSpec("diabetes", "Condition", (), None, False, value_set=DIABETES),
    InputSpec("smoking_status", "Observation", (loinc("72166-2"),), SMOKING_LOOKBACK_DAYS),
    InputSpec("established_ascvd", "Condition", (), None, False, value_set=ESTABLISHED_ASCVD),
    InputSpec("statin", "MedicationRequest", (), None, False, value_set=STATINS),
    InputSpec("ldl", "Observation", LDL_CODES, LIPID_LOOKBACK_DAYS, False),
)


def _spec() -> ModelSpec:
    parameters = {
        "equations": {f"{sex}-{aa}": vars(eq) for (sex, aa), eq in EQUATIONS.items()},
        "ranges": [AGE_RANGE, TOTAL_CHOLESTEROL_RANGE, HDL_RANGE, SYSTOLIC_RANGE],
        "value_sets": [value_set(name) for name in (ANTIHYPERTENSIVES, STATINS, DIABETES, ESTABLISHED_ASCVD)],
        "smoking": SMOKING_ANSWERS,
        "inputs": [vars(i) for i in INPUTS],
    }
    return ModelSpec(
        id=MODEL_ID,
        version=VERSION,
        version_hash=base.version_hash(
            model_id=MODEL_ID,
            version=VERSION,
            parameters=parameters,
            modules=[sys.modules[__name__], base, values, valueset],
        ),
        title=TITLE,
        intended_use=(
            "Estimates the 10-year risk of a first atherosclerotic cardiovascular event (coronary death, "
            "non-fatal myocardial infarction, fatal or non-fatal stroke) for adults aged 40 to 79 without known "
            "cardiovascular disease, to inform a primary-prevention discussion. Not for patients with established "
            f"ASCVD or LDL >= 190 mg/dL. {base.DECISION_SUPPORT}"
        ),
        purpose="TREAT",
        inputs=INPUTS,
        output_code=loinc("79423-0"),
        population="Adults aged 40 to 79 without clinical atherosclerotic cardiovascular disease (primary prevention).",
        horizon_years=10,
    )


def smoking_reader(node: dict[str, Any]) -> bool:
    """True for a current smoker, False for a former or never smoker, from a 72166-2 answer."""
    token = values.first_match(node.get("valueCodeableConcept"), [snomed(c) for c in SMOKING_ANSWERS])
    if token is None:
        raise values.Unusable("its answer is not a known current, former or never smoking status")
    return SMOKING_ANSWERS[token.rsplit("|", 1)[1]]


class AscvdPce2013:
    """The Pooled Cohort Equations, with each term's share of the individual sum as a contribution."""

    def __init__(self) -> None:
        self.spec = _spec()

    def run(self, inputs: Mapping[str, Sequence[dict[str, Any]]], *, as_of: date) -> ModelResult:
        problems: list[Contribution] = []
        patient, age, sex = values.adult_demographics(
            inputs, as_of, ages=AGE_RANGE, for_whom="the ages the equations are for", problems=problems
        )
        race_codes = [] if isinstance(patient, Absent) else values.omb_race_codes(patient)

        def observed(name: str, read: Any, what: str) -> Reading | None:
            return values.declared_quantity(
                inputs, self.spec.input(name), as_of=as_of, read=read, what=what, problems=problems
            )

        tc = observed(
            "total_cholesterol", values.quantity_reader(CHOLESTEROL_UNITS, "mg/dL or mmol/L"), "total cholesterol"
        )
        hdl = observed("hdl", values.quantity_reader(CHOLESTEROL_UNITS, "mg/dL or mmol/L"), "HDL cholesterol")
        sbp = observed("systolic_bp", values.quantity_reader(PRESSURE_UNITS, "mm[Hg]"), "systolic blood pressure")
        smoking = observed("smoking_status", smoking_reader, "tobacco smoking status")
        established = values.matching_condition(
            inputs.get("established_ascvd", ()), match=value_set(ESTABLISHED_ASCVD).match, as_of=as_of, history=True
        )
        if established is not None:
            problems.append(
                Contribution(
                    "established_ascvd",
                    established.value,
                    None,
                    f"{established.source} ({established.value}, recorded {established.day}) is clinical ASCVD, "
                    "whatever its clinical status: the equations are for primary prevention and do not apply",
                    kind="excluded",
                )
            )
        if problems or not isinstance(age, int) or not isinstance(sex, str):
            return base.insufficient(TITLE, problems)
        if tc is None or hdl is None or sbp is None or smoking is None:
            return base.insufficient(TITLE, problems)  # unreachable: each None added a problem above
        medication = values.matching_medication(
            inputs.get("antihypertensive", ()), match=value_set(ANTIHYPERTENSIVES).match, as_of=as_of
        )
        diabetes = values.matching_condition(inputs.get("diabetes", ()), match=value_set(DIABETES).match, as_of=as_of)
        scored = self._score(
            age=age,
            sex=sex,
            african_american=AFRICAN_AMERICAN in race_codes,
            race_codes=race_codes,
            tc=tc,
            hdl=hdl,
            sbp=sbp,
            smoker=smoking,
            medication=medication,
            diabetes=diabetes,
            inputs=inputs,
        )
        groups, warnings = self._statin_groups(age, diabetes, inputs, as_of), _data_warnings(tc, hdl, inputs, as_of)
        notes = (
            Contribution("statin_benefit_groups", ", ".join(groups) or "none", None, _groups_rule(groups)),
            Contribution("data_warnings", "; ".join(warnings) or "none", None, "; ".join(warnings) or "none"),
        )
        return replace(
            scored,
            outputs={
                **scored.outputs,
                "statin_benefit_groups": ", ".join(groups) or "none",
                "data_warnings": "; ".join(warnings) or "none",
            },
            contributions=scored.contributions + notes,
        )

    def _statin_groups(
        self, age: int, diabetes: Reading | None, inputs: Mapping[str, Sequence[dict[str, Any]]], as_of: date
    ) -> list[str]:
        """The 2018 guideline's statin benefit groups this record shows (primary prevention)."""
        groups = []
        spec = self.spec.input("ldl")
        ldl = values.latest_observation(
            inputs.get("ldl", ()),
            codes=spec.codes,
            as_of=as_of,
            lookback_days=spec.lookback_days,
            read=values.quantity_reader(CHOLESTEROL_UNITS, "mg/dL or mmol/L"),
            what="LDL cholesterol",
        )
        if isinstance(ldl, Reading) and ldl.value >= LDL_STATIN_THRESHOLD:
            groups.append(f"LDL-C >= 190 mg/dL ({ldl.value:g} mg/dL, {ldl.source}, {ldl.day})")
        low, high = STATIN_DIABETES_AGES
        if diabetes is not None and low <= age <= high:
            groups.append(f"diabetes aged 40-75 ({diabetes.source})")
        statin = values.matching_medication(inputs.get("statin", ()), match=value_set(STATINS).match, as_of=as_of)
        if statin is not None:
            groups.append(f"current statin use ({statin.source}: {statin.value})")
        return groups

    def _score(
        self,
        *,
        age: int,
        sex: str,
        african_american: bool,
        race_codes: list[str],
        tc: Reading,
        hdl: Reading,
        sbp: Reading,
        smoker: Reading,
        medication: Reading | None,
        diabetes: Reading | None,
        inputs: Mapping[str, Sequence[dict[str, Any]]],
    ) -> ModelResult:
        equation = EQUATIONS[(sex, african_american)]
        treated = medication is not None
        ln_age, ln_tc, ln_hdl, ln_sbp = math.log(age), math.log(tc.value), math.log(hdl.value), math.log(sbp.value)
        smokes, diabetic = float(smoker.value), float(diabetes is not None)
        state = "treated" if treated else "untreated"
        terms = {
            "ln_age": ln_age,
            "ln_age_sq": ln_age * ln_age,
            "ln_tc": ln_tc,
            "ln_age_ln_tc": ln_age * ln_tc,
            "ln_hdl": ln_hdl,
            "ln_age_ln_hdl": ln_age * ln_hdl,
            f"ln_sbp_{state}": ln_sbp,
            f"ln_age_ln_sbp_{state}": ln_age * ln_sbp,
            "smoker": smokes,
            "ln_age_smoker": ln_age * smokes,
            "diabetes": diabetic,
        }
        effects: dict[str, float] = {}
        for term, value in terms.items():
            coefficient = equation.coefficients.get(term, 0.0)
            if coefficient:
                group = TERM_GROUPS[term]
                effects[group] = effects.get(group, 0.0) + coefficient * value
        individual_sum = sum(effects.values())
        risk = 1.0 - equation.baseline_survival ** math.exp(individual_sum - equation.mean)
        percent = values.half_up(risk * 100.0, 1)
        category = category_of(percent)
        rules = self._rules(age, tc, hdl, sbp, smoker, medication, diabetes, inputs, state)
        contributions = [
            Contribution(
                "equation",
                equation.name,
                None,
                race_rule(sex, african_american, race_codes),
            ),
            *[
                Contribution(group, rules[group][0], round(effect, 6), rules[group][1])
                for group, effect in effects.items()
            ],
            Contribution(
                "group_mean",
                equation.mean,
                round(-equation.mean, 6),
                f"risk = 1 - {equation.baseline_survival} ^ exp(individual sum {individual_sum:.2f} - group mean "
                f"{equation.mean}) = {risk * 100:.2f}%",
            ),
        ]
        return ModelResult(
            status=base.SUCCEEDED,
            outputs={
                "risk_10y_percent": percent,
                "category": category,
                "equation": equation.name,
                "individual_sum": round(individual_sum, 4),
                "treated_hypertension": treated,
            },
            contributions=tuple(contributions),
            missing=(),
            summary=(
                f"Estimated 10-year risk of a first ASCVD event: {percent:.1f}% ({category}), "
                f"by the {equation.name.replace('-', ' ')} Pooled Cohort Equation."
            ),
        )

    @staticmethod
    def _rules(
        age: int,
        tc: Reading,
        hdl: Reading,
        sbp: Reading,
        smoker: Reading,
        medication: Reading | None,
        diabetes: Reading | None,
        inputs: Mapping[str, Sequence[dict[str, Any]]],
        state: str,
    ) -> dict[str, tuple[object, str]]:
        if medication is not None:
            treatment = f"treated: active {medication.source} ({medication.value})"
        else:
            treatment = "untreated: no active antihypertensive MedicationRequest on record"
        if diabetes is not None:
            diabetes_rule = f"active {diabetes.source} ({diabetes.value})"
        else:
            diabetes_rule = "no active diabetes Condition on record (prediabetes does not count)"
        smoking_rule = f"{'current' if smoker.value else 'not a current'} smoker per {smoker.source} ({smoker.day})"
        return {
            "age": (age, f"age {age} at the score date: ln(age) terms"),
            "total_cholesterol": (round(tc.value, 1), f"{tc.value:g} mg/dL from {tc.source} ({tc.day})"),
            "age x total_cholesterol": (None, "interaction ln(age) x ln(total cholesterol)"),
            "hdl": (round(hdl.value, 1), f"{hdl.value:g} mg/dL from {hdl.source} ({hdl.day})"),
            "age x hdl": (None, "interaction ln(age) x ln(HDL)"),
            "systolic_bp": (round(sbp.value, 1), f"{sbp.value:g} mm Hg from {sbp.source} ({sbp.day}), {treatment}"),
            "age x systolic_bp": (None, f"interaction ln(age) x ln({state} systolic pressure)"),
            "smoker": (smoker.value, smoking_rule),
            "age x smoker": (None, "interaction ln(age) x current smoker"),
            "diabetes": (diabetes is not None, diabetes_rule),
        }


def _groups_rule(groups: list[str]) -> str:
    checked = "checked: LDL-C >= 190 mg/dL, diabetes aged 40-75, current statin use (2018 AHA/ACC guideline)"
    if not groups:
        return f"none of the statin benefit groups applies; {checked}"
    return f"{'; '.join(groups)}: a statin is indicated or taken whatever the 10-year risk; {checked}"


def _data_warnings(tc: Reading, hdl: Reading, inputs: Mapping[str, Sequence[dict[str, Any]]], as_of: date) -> list[str]:
    """What a clinician should know about the data behind the number: old lipids, a single pressure reading."""
    warnings = []
    oldest_lipid = min(tc.day, hdl.day)
    if (as_of - oldest_lipid).days > LIPID_WARNING_DAYS:
        warnings.append(f"lipids are more than a year old ({oldest_lipid})")
    earliest = as_of - timedelta(days=PRESSURE_LOOKBACK_DAYS)
    pressures = {
        values.parse_instant(values.clinical_time(resource))
        for resource in inputs.get("systolic_bp", ())
        if type(resource) is dict
        and resource.get("status") in values.USABLE_OBSERVATION_STATUSES
        and (day := values.parse_day(values.clinical_time(resource))) is not None
        and earliest <= day <= as_of
    }
    if len(pressures) == 1:
        warnings.append("a single blood-pressure reading in the last year: the guideline averages two or more")
    return warnings
