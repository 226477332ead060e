"""Albuminuria category (KDIGO 2012) from the urine albumin-to-creatinine ratio.

Source: KDIGO 2012 Clinical Practice Guideline for the Evaluation and Management
of Chronic Kidney Disease, Kidney Int Suppl 2013;3(1), Table 5 (albuminuria
categories in CKD): A1 < 30 mg/g (< 3 mg/mmol) normal to mildly increased,
A2 30-300 mg/g (3-30 mg/mmol) moderately increased, A3 > 300 mg/g (> 30 mg/mmol)
severely increased. One ratio is a finding, not a diagnosis: CKD needs it to
persist for more than three months.

Input from FHIR: the latest urine albumin/creatinine ratio of the last year,
LOINC 9318-7 (albumin/creatinine mass ratio), 14959-1 (microalbumin/creatinine,
as Synthea writes it) or 32294-1 (albumin/creatinine ratio), in mg/g (ug/mg the
same) or mg/mmol (x 8.84, creatinine 113.12 g/mol), plausible 0-30000 mg/g.
This is also the UACR reader the Kidney Failure Risk Equation needs.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from diagnostics.inference import base, values
from diagnostics.inference.base import Contribution, InputSpec, ModelResult, ModelSpec
from diagnostics.inference.values import Absent, loinc

MODEL_ID = "albuminuria-kdigo-2012"
VERSION = "1.0.0"
TITLE = "Albuminuria category (KDIGO 2012, urine albumin-to-creatinine ratio)"

MG_G_PER_MG_MMOL = 8.84
UACR_UNITS = {
    "mg/g": values.same,
    "ug/mg": values.same,
    "mg/g{creat}": values.same,
    "mg/mmol": lambda v: v * MG_G_PER_MG_MMOL,
    "mg/mmol{creat}": lambda v: v * MG_G_PER_MG_MMOL,
}
UACR_READER = values.quantity_reader(UACR_UNITS, "mg/g or mg/mmol")
UACR_CODES = (loinc("9318-7"), loinc("14959-1"), loinc("32294-1"))
UACR_PLAUSIBLE = (0.0, 30000.0)
LOOKBACK_DAYS = 365
ADULT = 18

# (lowest ratio in mg/g, category, KDIGO description), highest first: A2 starts at 30, A3 above 300.
CATEGORIES = (
    (300.0, "A3", "severely increased"),
    (30.0, "A2", "moderately increased"),
    (0.0, "A1", "normal to mildly increased"),
)

INPUTS = (
    InputSpec("patient", "Patient", (), None),
    InputSpec(
        "uacr",
        "Observation",
        UACR_CODES,
        LOOKBACK_DAYS,
        unit="mg/g",
        limits=UACR_PLAUSIBLE,
        limits_basis="what a urine albumin-to-creatinine ratio can be",
    ),
)


def kdigo_albuminuria(uacr_mg_g: float) -> tuple[str, str]:
    """KDIGO A category and its description for a ratio in mg/g (A3 is above 300, A2 from 30 to 300)."""
    if uacr_mg_g > CATEGORIES[0][0]:
        return CATEGORIES[0][1], CATEGORIES[0][2]
    if uacr_mg_g >= CATEGORIES[1][0]:
        return CATEGORIES[1][1], CATEGORIES[1][2]
    return CATEGORIES[2][1], CATEGORIES[2][2]


def _spec() -> ModelSpec:
    parameters = {"categories": CATEGORIES, "units": sorted(UACR_UNITS), "inputs": [vars(i) for i in INPUTS]}
    return ModelSpec(
        id=MODEL_ID,
        version=VERSION,
        version_hash=base.version_hash(
            model_id=MODEL_ID, version=VERSION, parameters=parameters, modules=[sys.modules[__name__], base, values]
        ),
        title=TITLE,
        intended_use=(
            "Gives the KDIGO 2012 albuminuria category of an adult's latest urine albumin-to-creatinine ratio, to "
            "stage chronic kidney disease together with the eGFR category and to decide on repeat testing. A single "
            f"ratio does not diagnose chronic kidney disease. {base.DECISION_SUPPORT}"
        ),
        purpose="TREAT",
        inputs=INPUTS,
        output_code=loinc("9318-7"),
        population="Adults aged 18 or over.",
    )


class AlbuminuriaKdigo2012:
    """The KDIGO albuminuria category; the ratio read and its conversion are the contributions."""

    def __init__(self) -> None:
        self.spec = _spec()

    def run(self, inputs: Mapping[str, Sequence[dict[str, Any]]], *, as_of: date) -> ModelResult:
        problems: list[Contribution] = []
        patient = values.the_patient(inputs.get("patient", ()))
        if isinstance(patient, Absent):
            problems.append(values.problem("patient", patient))
        elif values.deceased_by(patient, as_of):
            problems.append(values.problem("patient", values.DECEASED))
        else:
            age = values.age_at(patient, as_of)
            if isinstance(age, Absent):
                problems.append(values.problem("age", age))
            else:
                child = values.out_of_range("age", age, (ADULT, 130), "years", "the adults the categories are for")
                problems.extend([child] if child else [])
        uacr = values.declared_quantity(
            inputs,
            self.spec.input("uacr"),
            as_of=as_of,
            read=UACR_READER,
            what="urine albumin-to-creatinine ratio",
            problems=problems,
        )
        if problems or uacr is None:
            return base.insufficient(TITLE, problems)
        category, description = kdigo_albuminuria(uacr.value)
        ratio = round(uacr.value, 1)
        return ModelResult(
            status=base.SUCCEEDED,
            outputs={"uacr_mg_g": ratio, "category": category, "category_description": description},
            contributions=(
                Contribution("uacr", ratio, None, f"{ratio:g} mg/g from {uacr.source} ({uacr.day})"),
                Contribution(
                    "category",
                    category,
                    None,
                    f"KDIGO 2012: A1 < 30, A2 30-300, A3 > 300 mg/g -> {category} ({description})",
                ),
            ),
            missing=(),
            sources=(uacr.source,),
            summary=f"Urine albumin-to-creatinine ratio {ratio:g} mg/g: KDIGO category {category} ({description}).",
        )
