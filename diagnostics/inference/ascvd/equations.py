"""The Pooled Cohort Equations' published tables: Table A of Goff et al. 2013 (coefficients per race and sex
group, group mean, baseline survival), the terms' grouping into contributions, which equation a patient's
recorded race selects, and the 2018 AHA/ACC risk categories."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Equation:
    """One race and sex group of Table A: coefficient per term, group mean, baseline survival."""

    name: str
    coefficients: dict[str, float]
    mean: float
    baseline_survival: float


# Terms: ln_age, ln_age_sq, ln_tc, ln_age_ln_tc, ln_hdl, ln_age_ln_hdl, ln_sbp_treated, ln_age_ln_sbp_treated,
# ln_sbp_untreated, ln_age_ln_sbp_untreated, smoker, ln_age_smoker, diabetes. A term not listed is N/A (0).
EQUATIONS: dict[tuple[str, bool], Equation] = {
    ("female", False): Equation(
        "white-female",
        {
            "ln_age": -29.799,
            "ln_age_sq": 4.884,
            "ln_tc": 13.540,
            "ln_age_ln_tc": -3.114,
            "ln_hdl": -13.578,
            "ln_age_ln_hdl": 3.149,
            "ln_sbp_treated": 2.019,
            "ln_sbp_untreated": 1.957,
            "smoker": 7.574,
            "ln_age_smoker": -1.665,
            "diabetes": 0.661,
        },
        mean=-29.18,
        baseline_survival=0.9665,
    ),
    ("female", True): Equation(
        "african-american-female",
        {
            "ln_age": 17.114,
            "ln_tc": 0.940,
            "ln_hdl": -18.920,
            "ln_age_ln_hdl": 4.475,
            "ln_sbp_treated": 29.291,
            "ln_age_ln_sbp_treated": -6.432,
            "ln_sbp_untreated": 27.820,
            "ln_age_ln_sbp_untreated": -6.087,
            "smoker": 0.691,
            "diabetes": 0.874,
        },
        mean=86.61,
        baseline_survival=0.9533,
    ),
    ("male", False): Equation(
        "white-male",
        {
            "ln_age": 12.344,
            "ln_tc": 11.853,
            "ln_age_ln_tc": -2.664,
            "ln_hdl": -7.990,
            "ln_age_ln_hdl": 1.769,
            "ln_sbp_treated": 1.797,
            "ln_sbp_untreated": 1.764,
            "smoker": 7.837,
            "ln_age_smoker": -1.795,
            "diabetes": 0.658,
        },
        mean=61.18,
        baseline_survival=0.9144,
    ),
    ("male", True): Equation(
        "african-american-male",
        {
            "ln_age": 2.469,
            "ln_tc": 0.302,
            "ln_hdl": -0.307,
            "ln_sbp_treated": 1.916,
            "ln_sbp_untreated": 1.809,
            "smoker": 0.549,
            "diabetes": 0.645,
        },
        mean=19.54,
        baseline_survival=0.8954,
    ),
}

# Which contribution each term belongs to: the inputs it reads.
TERM_GROUPS = {
    "ln_age": "age",
    "ln_age_sq": "age",
    "ln_tc": "total_cholesterol",
    "ln_age_ln_tc": "age x total_cholesterol",
    "ln_hdl": "hdl",
    "ln_age_ln_hdl": "age x hdl",
    "ln_sbp_treated": "systolic_bp",
    "ln_sbp_untreated": "systolic_bp",
    "ln_age_ln_sbp_treated": "age x systolic_bp",
    "ln_age_ln_sbp_untreated": "age x systolic_bp",
    "smoker": "smoker",
    "ln_age_smoker": "age x smoker",
    "diabetes": "diabetes",
}

# 2018 AHA/ACC cholesterol guideline risk categories, on the reported (one-decimal) percentage.
CATEGORIES = ((5.0, "low"), (7.5, "borderline"), (20.0, "intermediate"), (math.inf, "high"))


def category_of(percent: float) -> str:
    """The 2018 guideline category of a reported 10-year risk percentage."""
    return next(name for bound, name in CATEGORIES if percent < bound)


def race_rule(sex: str, african_american: bool, race_codes: list[str]) -> str:
    """Which of the equations the patient's recorded sex and race select, in words."""
    if african_american:
        return f"{sex}; race recorded as Black or African American (OMB 2054-5): African American equation"
    if race_codes:
        recorded = ", ".join(race_codes)
        return f"{sex}; race recorded as OMB {recorded}: the white equation, as the guideline advises for other groups"
    return f"{sex}; race not recorded: the white equation, as the guideline advises when race is other or unknown"
