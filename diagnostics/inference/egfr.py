"""Estimated GFR by the race-free CKD-EPI 2021 creatinine equation, with the KDIGO G stage.

Source: Inker LA et al. New Creatinine- and Cystatin C-Based Equations to
Estimate GFR without Race. N Engl J Med 2021;385:1737-49:

    eGFRcr = 142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age x 1.012 [if female]

with Scr in mg/dL, k = 0.7 (female) or 0.9 (male), a = -0.241 (female) or
-0.302 (male); result in mL/min/1.73 m2.

Inputs from FHIR: Patient.birthDate (full date; adults, age >= 18, as the
equation was developed in), Patient.gender (female | male), and the latest
serum creatinine, LOINC 2160-0 (serum or plasma, mass), 38483-4 (as Synthea writes
it) or 14682-9 (serum or plasma, moles), in mg/dL or umol/L (divided by 88.4),
from the last year, and plausible: 0.2-20 mg/dL (18-1768 umol/L); outside that
range the value is an entry or unit error and the model says so.

Stage: KDIGO 2012 GFR categories on the reported (whole-number) eGFR, as a
laboratory report shows it: G1 >= 90, G2 60-89, G3a 45-59, G3b 30-44, G4 15-29,
G5 < 15. An eGFR alone does not diagnose chronic kidney disease: that needs a
reduced GFR or kidney damage for more than three months.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from diagnostics.inference import base, values
from diagnostics.inference.base import Contribution, InputSpec, ModelResult, ModelSpec
from diagnostics.inference.values import loinc

MODEL_ID = "egfr-ckd-epi-2021"
VERSION = "1.0.0"
TITLE = "eGFR (CKD-EPI 2021 creatinine, race-free)"

UMOL_PER_MG_CREATININE = 88.4
CREATININE_UNITS = {
    "mg/dL": values.same,
    "umol/L": lambda v: v / UMOL_PER_MG_CREATININE,
    "µmol/L": lambda v: v / UMOL_PER_MG_CREATININE,
}
# What a serum creatinine can plausibly be (mg/dL; 18-1768 umol/L): outside it is a unit or entry error,
# and the equation would report it (0.01 mg/dL gives an eGFR of 405).
CREATININE_PLAUSIBLE = (0.2, 20.0)
AGE_PLAUSIBLE = (18, 120)
CREATININE_LOOKBACK_DAYS = 365
MINIMUM_AGE = 18

# sex -> (kappa, alpha, sex factor)
PARAMETERS: dict[str, tuple[float, float, float]] = {"female": (0.7, -0.241, 1.012), "male": (0.9, -0.302, 1.0)}
CONSTANT = 142.0
ABOVE_KAPPA_EXPONENT = -1.200
AGE_BASE = 0.9938

# (lowest reported eGFR, stage, KDIGO description), highest first.
STAGES = (
    (90, "G1", "normal or high"),
    (60, "G2", "mildly decreased"),
    (45, "G3a", "mildly to moderately decreased"),
    (30, "G3b", "moderately to severely decreased"),
    (15, "G4", "severely decreased"),
    (0, "G5", "kidney failure range"),
)

INPUTS = (
    InputSpec("patient", "Patient", (), None),
    InputSpec(
        "creatinine",
        "Observation",
        (loinc("2160-0"), loinc("38483-4"), loinc("14682-9")),
        CREATININE_LOOKBACK_DAYS,
        unit="mg/dL",
        limits=CREATININE_PLAUSIBLE,
        limits_basis="what a serum creatinine can be",
    ),
)


def egfr_ckd_epi_2021(*, creatinine_mg_dl: float, age: int, sex: str) -> float:
    """The CKD-EPI 2021 creatinine equation, unrounded (mL/min/1.73 m2)."""
    kappa, alpha, sex_factor = PARAMETERS[sex]
    ratio = creatinine_mg_dl / kappa
    return CONSTANT * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** ABOVE_KAPPA_EXPONENT * AGE_BASE**age * sex_factor


def kdigo_stage(reported_egfr: int) -> tuple[str, str]:
    """KDIGO G category and its description for a reported (whole-number) eGFR."""
    return next((stage, text) for lowest, stage, text in STAGES if reported_egfr >= lowest)


def _spec() -> ModelSpec:
    parameters = {
        "sex": PARAMETERS,
        "constant": CONSTANT,
        "above": ABOVE_KAPPA_EXPONENT,
        "age_base": AGE_BASE,
        "stages": STAGES,
        "minimum_age": MINIMUM_AGE,
        "plausible": [CREATININE_PLAUSIBLE, AGE_PLAUSIBLE],
        "inputs": [vars(i) for i in INPUTS],
    }
    return ModelSpec(
        id=MODEL_ID,
        version=VERSION,
        version_hash=base.version_hash(
            model_id=MODEL_ID, version=VERSION, parameters=parameters, modules=[sys.modules[__name__], base, values]
        ),
        title=TITLE,
        intended_use=(
            "Estimates the glomerular filtration rate of an adult in a steady state from serum creatinine, age and "
            "sex (CKD-EPI 2021, without race), and gives its KDIGO GFR category, to support kidney function "
            "assessment and drug dosing review. Unreliable in acute kidney injury, extremes of muscle mass, "
            f"pregnancy and children. {base.DECISION_SUPPORT}"
        ),
        purpose="TREAT",
        inputs=INPUTS,
        output_code=loinc("98979-8"),
        population="Adults aged 18 or over, in a steady state (not acute kidney injury, not pregnant).",
        observation=(
            "egfr_ml_min_1_73m2",
            loinc("98979-8"),
            "mL/min/{1.73_m2}",
            "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by "
            "Creatinine-based formula (CKD-EPI 2021)",
        ),
    )


class EgfrCkdEpi2021:
    """CKD-EPI 2021; each factor of the product is a contribution (effect = the multiplier it applies)."""

    def __init__(self) -> None:
        self.spec = _spec()

    def run(self, inputs: Mapping[str, Sequence[dict[str, Any]]], *, as_of: date) -> ModelResult:
        problems: list[Contribution] = []
        _, age, sex = values.adult_demographics(
            inputs, as_of, ages=AGE_PLAUSIBLE, for_whom="the adults the equation is for", problems=problems
        )
        creatinine = values.declared_quantity(
            inputs,
            self.spec.input("creatinine"),
            as_of=as_of,
            read=values.quantity_reader(CREATININE_UNITS, "mg/dL or umol/L"),
            what="serum creatinine",
            problems=problems,
        )
        if problems or creatinine is None or not isinstance(age, int) or not isinstance(sex, str):
            return base.insufficient(TITLE, problems)

        scr = creatinine.value
        kappa, alpha, sex_factor = PARAMETERS[sex]
        ratio = scr / kappa
        egfr = egfr_ckd_epi_2021(creatinine_mg_dl=scr, age=age, sex=sex)
        reported = int(values.half_up(egfr))
        stage, description = kdigo_stage(reported)
        creatinine_factor = min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** ABOVE_KAPPA_EXPONENT
        contributions = (
            Contribution("constant", CONSTANT, CONSTANT, "CKD-EPI 2021 starts from 142 mL/min/1.73 m2"),
            Contribution(
                "creatinine",
                round(scr, 3),
                round(creatinine_factor, 6),
                f"Scr {scr:.3g} mg/dL from {creatinine.source} ({creatinine.day}); "
                f"Scr/k = {ratio:.4f} with k = {kappa} ({sex}): x min(Scr/k,1)^{alpha} x max(Scr/k,1)^-1.200",
            ),
            Contribution("age", age, round(AGE_BASE**age, 6), f"x 0.9938^{age}"),
            Contribution(
                "sex",
                sex,
                sex_factor,
                "x 1.012 for female" if sex == "female" else "no sex factor for male (1.0); race is not used",
            ),
            Contribution("stage", stage, None, f"KDIGO: reported eGFR {reported} -> {stage} ({description})"),
        )
        return ModelResult(
            status=base.SUCCEEDED,
            outputs={
                "egfr_ml_min_1_73m2": reported,
                "egfr_unrounded": round(egfr, 2),
                "stage": stage,
                "stage_description": description,
                "creatinine_mg_dl": round(scr, 3),
            },
            contributions=contributions,
            missing=(),
            sources=(creatinine.source,),
            summary=f"Estimated GFR {reported} mL/min/1.73 m2 (CKD-EPI 2021), KDIGO category {stage} ({description}).",
        )
