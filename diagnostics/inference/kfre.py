"""2- and 5-year risk of kidney failure: the 4-variable Kidney Failure Risk Equation (KFRE).

Sources: Tangri N et al. A predictive model for progression of chronic kidney
disease to kidney failure. JAMA 2011;305:1553-9 (the equation), and Tangri N et
al. Multinational assessment of accuracy of equations for predicting risk of
kidney failure: a meta-analysis. JAMA 2016;315:164-74 (the recalibrated
baseline survivals, North American and non-North American):

    risk = 1 - S0(t) ^ exp( -0.2201 x (age/10 - 7.036) + 0.2467 x (male - 0.5642)
                            -0.5567 x (eGFR/5 - 7.222) + 0.4510 x (ln(ACR mg/g) - 5.137) )

    S0(2 years) = 0.9750, S0(5 years) = 0.9240   North American
    S0(2 years) = 0.9832, S0(5 years) = 0.9365   non-North American

Kidney failure is treated kidney failure: dialysis or a kidney transplant. The
equation was validated in CKD categories G3a-G5 (eGFR < 60), and with the
CKD-EPI 2021 eGFR by Grams ME et al. (J Am Soc Nephrol 2023;34:482-94).

Inputs from FHIR: Patient.birthDate and Patient.gender (adults), serum
creatinine as the eGFR model reads it (LOINC 2160-0, 38483-4, 14682-9, last
year), turned into the reported (whole-number) CKD-EPI 2021 eGFR, and the urine
albumin-to-creatinine ratio as the albuminuria model reads it (LOINC 9318-7,
14959-1, 32294-1, mg/g or mg/mmol, last year). An eGFR of 60 or more is
outside the population and refused with its reason, never scored. So is a
patient already treated for kidney failure: dialysis, a kidney transplant or
end-stage kidney disease recorded as a Condition or a Procedure (value set
`kidney-replacement-therapy`, read as diagnostics.inference.kidney_replacement says).

What the risk is used for (quoted as thresholds, not as categories the equation
defines): NICE NG203 (2021) refers adults with a 5-year risk above 5%; KDIGO
2024 suggests nephrology referral from a 5-year risk of 3-5%, multidisciplinary
care from a 2-year risk above 10% and preparation for kidney replacement
therapy from a 2-year risk above 40%.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date
from typing import Any

from diagnostics.inference import albuminuria, base, egfr, kidney_replacement, values
from diagnostics.inference.base import Contribution, InputSpec, ModelResult, ModelSpec
from diagnostics.inference.values import snomed
from diagnostics.inference.valueset import value_set

MODEL_ID = "kfre-4-variable"
VERSION = "1.1.0"
TITLE = "Kidney failure risk at 2 and 5 years (4-variable KFRE, Tangri 2011/2016)"

NORTH_AMERICAN = "north-american"
NON_NORTH_AMERICAN = "non-north-american"
CALIBRATIONS = (NORTH_AMERICAN, NON_NORTH_AMERICAN)

# term -> (coefficient, how the input is scaled, the centring value), Tangri 2011 / 2016.
COEFFICIENTS: dict[str, tuple[float, str, float]] = {
    "age": (-0.2201, "age / 10", 7.036),
    "sex": (0.2467, "1 if male, 0 if female", 0.5642),
    "egfr": (-0.5567, "eGFR / 5", 7.222),
    "uacr": (0.4510, "ln(ACR in mg/g)", 5.137),
}
# calibration -> {years: baseline survival}, Tangri 2016.
BASELINE_SURVIVAL: dict[str, dict[int, float]] = {
    NORTH_AMERICAN: {2: 0.9750, 5: 0.9240},
    NON_NORTH_AMERICAN: {2: 0.9832, 5: 0.9365},
}
# CKD G3a-G5, as a reported eGFR (mL/min/1.73 m2).
EGFR_RANGE = (1.0, 59.0)
AGE_RANGE = (18, 120)
# A ratio must be positive for its logarithm; above 30 g/g it is an entry or unit error.
UACR_PLAUSIBLE = (0.1, 30000.0)
# (horizon in years, the lowest reported risk % that meets it, what it means), each guideline's own words.
THRESHOLDS = (
    (5, 3.0, "KDIGO 2024: nephrology referral from a 5-year risk of 3-5%"),
    (5, 5.1, "NICE NG203: refer to nephrology (5-year risk above 5%)"),
    (2, 10.1, "KDIGO 2024: multidisciplinary care (2-year risk above 10%)"),
    (2, 40.1, "KDIGO 2024: prepare for kidney replacement therapy (2-year risk above 40%)"),
)

INPUTS = (
    InputSpec("patient", "Patient", (), None),
    egfr.INPUTS[1],  # serum creatinine, read and held to plausible limits exactly as the eGFR model does
    InputSpec(
        "uacr",
        "Observation",
        albuminuria.UACR_CODES,
        albuminuria.LOOKBACK_DAYS,
        unit="mg/g",
        limits=UACR_PLAUSIBLE,
        limits_basis="a positive urine albumin-to-creatinine ratio that can be real",
    ),
    *kidney_replacement.INPUTS,
)


def linear_predictor(*, age: float, male: bool, egfr_ml_min: float, uacr_mg_g: float) -> float:
    """The 4-variable KFRE's centred linear predictor."""
    scaled = {"age": age / 10.0, "sex": float(male), "egfr": egfr_ml_min / 5.0, "uacr": math.log(uacr_mg_g)}
    return sum(coefficient * (scaled[term] - centre) for term, (coefficient, _, centre) in COEFFICIENTS.items())


def kfre_risk(*, age: float, male: bool, egfr_ml_min: float, uacr_mg_g: float, years: int, calibration: str) -> float:
    """The probability (0-1) of treated kidney failure within `years` (2 or 5), unrounded."""
    survival = BASELINE_SURVIVAL[calibration][years]
    return 1.0 - survival ** math.exp(
        linear_predictor(age=age, male=male, egfr_ml_min=egfr_ml_min, uacr_mg_g=uacr_mg_g)
    )


def _spec(calibration: str) -> ModelSpec:
    parameters = {
        "coefficients": COEFFICIENTS,
        "baseline_survival": BASELINE_SURVIVAL,
        "calibration": calibration,
        "ranges": [EGFR_RANGE, AGE_RANGE, UACR_PLAUSIBLE],
        "thresholds": THRESHOLDS,
        "inputs": [vars(i) for i in INPUTS],
        "value_sets": [value_set(kidney_replacement.VALUE_SET)],
        "dialysis_current_days": kidney_replacement.DIALYSIS_CURRENT_DAYS,
    }
    return ModelSpec(
        id=MODEL_ID,
        version=VERSION,
        version_hash=base.version_hash(
            model_id=MODEL_ID,
            version=VERSION,
            parameters=parameters,
            modules=[sys.modules[__name__], base, values, egfr, albuminuria, kidney_replacement],
        ),
        title=TITLE,
        intended_use=(
            "Estimates the 2- and 5-year probability of treated kidney failure (dialysis or transplant) for an adult "
            "with chronic kidney disease G3a-G5 (eGFR below 60) from age, sex, the CKD-EPI 2021 eGFR and the urine "
            "albumin-to-creatinine ratio, to inform nephrology referral and planning for kidney replacement therapy. "
            "Not for acute kidney injury, patients on dialysis or with a kidney transplant, or children. "
            f"{base.DECISION_SUPPORT}"
        ),
        purpose="TREAT",
        inputs=INPUTS,
        # The outcome predicted: SNOMED CT 46177005 |End-stage renal disease| (kidney failure).
        output_code=snomed("46177005"),
        population=(
            "Adults (18 or over) with chronic kidney disease G3a-G5 (CKD-EPI 2021 eGFR below 60 mL/min/1.73 m2), "
            "not on dialysis and without a kidney transplant."
        ),
        horizon_years=5,
    )


class Kfre4Variable:
    """The 4-variable KFRE; each term's share of the linear predictor is a contribution."""

    def __init__(self, *, calibration: str = NORTH_AMERICAN) -> None:
        if calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}")
        self.calibration = calibration
        self.spec = _spec(calibration)

    def run(self, inputs: Mapping[str, Sequence[dict[str, Any]]], *, as_of: date) -> ModelResult:
        problems: list[Contribution] = kidney_replacement.exclusions(inputs, as_of=as_of, model="the KFRE")
        _, age, sex = values.adult_demographics(
            inputs, as_of, ages=AGE_RANGE, for_whom="the adults the equation is for", problems=problems
        )
        creatinine = values.declared_quantity(
            inputs,
            self.spec.input("creatinine"),
            as_of=as_of,
            read=values.quantity_reader(egfr.CREATININE_UNITS, "mg/dL or umol/L"),
            what="serum creatinine",
            problems=problems,
        )
        uacr = values.declared_quantity(
            inputs,
            self.spec.input("uacr"),
            as_of=as_of,
            read=albuminuria.UACR_READER,
            what="urine albumin-to-creatinine ratio",
            problems=problems,
        )
        reported: int | None = None
        if creatinine is not None and isinstance(age, int) and isinstance(sex, str):
            reported = int(values.half_up(egfr.egfr_ckd_epi_2021(creatinine_mg_dl=creatinine.value, age=age, sex=sex)))
            outside = values.out_of_range(
                "egfr", reported, EGFR_RANGE, "mL/min/1.73 m2", "CKD G3a-G5, the population the equation is for"
            )
            if outside is not None:
                problems.append(replace(outside, value=None))
        if problems or reported is None or uacr is None or not isinstance(age, int) or not isinstance(sex, str):
            return base.insufficient(TITLE, problems)
        return self._score(age=age, sex=sex, egfr_reported=reported, creatinine=creatinine, uacr=uacr)

    def _score(self, *, age: int, sex: str, egfr_reported: int, creatinine: Any, uacr: values.Reading) -> ModelResult:
        male = sex == "male"
        ratio = float(uacr.value)
        risks = {
            (calibration, years): kfre_risk(
                age=age, male=male, egfr_ml_min=egfr_reported, uacr_mg_g=ratio, years=years, calibration=calibration
            )
            for calibration in CALIBRATIONS
            for years in (2, 5)
        }
        own = {years: values.half_up(risks[(self.calibration, years)] * 100.0, 1) for years in (2, 5)}
        other = NON_NORTH_AMERICAN if self.calibration == NORTH_AMERICAN else NORTH_AMERICAN
        g_stage, _ = egfr.kdigo_stage(egfr_reported)
        a_stage, a_text = albuminuria.kdigo_albuminuria(ratio)
        met = [text for years, lowest, text in THRESHOLDS if own[years] >= lowest]
        scaled = {"age": age / 10.0, "sex": float(male), "egfr": egfr_reported / 5.0, "uacr": math.log(ratio)}
        rules = {
            "age": f"age {age} at the score date",
            "sex": f"{sex}: male = {int(male)}",
            "egfr": f"reported CKD-EPI 2021 eGFR {egfr_reported} mL/min/1.73 m2 from serum creatinine "
            f"{creatinine.value:.3g} mg/dL, {creatinine.source} ({creatinine.day}): KDIGO {g_stage}",
            "uacr": f"{ratio:g} mg/g from {uacr.source} ({uacr.day}): KDIGO {a_stage} ({a_text})",
        }
        contributions = [
            Contribution(
                term,
                {"age": age, "sex": sex, "egfr": egfr_reported, "uacr": round(ratio, 1)}[term],
                round(coefficient * (scaled[term] - centre), 6),
                f"{rules[term]}; {coefficient:+.4f} x ({how} - {centre})",
            )
            for term, (coefficient, how, centre) in COEFFICIENTS.items()
        ]
        baseline = BASELINE_SURVIVAL[self.calibration]
        contributions.append(
            Contribution(
                "calibration",
                self.calibration,
                None,
                f"{self.calibration.replace('-', ' ')} baseline survival {baseline[2]} at 2 years and {baseline[5]} at "
                "5 years (Tangri 2016): risk = 1 - S0 ^ exp(linear predictor)",
            )
        )
        contributions.append(Contribution("thresholds", "; ".join(met) or "none", None, "; ".join(met) or "none"))
        return ModelResult(
            status=base.SUCCEEDED,
            outputs={
                "risk_5y_percent": own[5],
                "risk_2y_percent": own[2],
                "calibration": self.calibration,
                f"risk_5y_percent_{other.replace('-', '_')}": values.half_up(risks[(other, 5)] * 100.0, 1),
                f"risk_2y_percent_{other.replace('-', '_')}": values.half_up(risks[(other, 2)] * 100.0, 1),
                "egfr_ml_min_1_73m2": egfr_reported,
                "uacr_mg_g": round(ratio, 1),
                "ckd_stage": f"{g_stage} {a_stage}",
                "thresholds": "; ".join(met) or "none",
            },
            contributions=tuple(contributions),
            missing=(),
            sources=(creatinine.source, uacr.source),
            summary=(
                f"Estimated risk of kidney failure (dialysis or transplant): {own[2]:.1f}% within 2 years and "
                f"{own[5]:.1f}% within 5 years (4-variable KFRE, {self.calibration.replace('-', ' ')} calibration; "
                f"CKD {g_stage} {a_stage})."
            ),
        )
