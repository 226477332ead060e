"""The 4-variable Kidney Failure Risk Equation against the calculator examples published with it.

Reference values: the two worked examples from www.kidneyfailurerisk.com quoted in Clinician Reviews
("Kidney disease progression: how to calculate risk", citing Tangri 2011): a 63-year-old woman, GFR 45,
ACR 30 mg/g: 0.4% at 2 years and 1.3% at 5 years; a 55-year-old man, GFR 38, ACR 150 mg/g: 2.9% and 9%.
The calculator shows risks cut to one decimal, so the equation's risk, cut the same way, must equal them.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pytest

from diagnostics.inference import get_model
from diagnostics.inference.kfre import NON_NORTH_AMERICAN, NORTH_AMERICAN, Kfre4Variable, kfre_risk

AS_OF = date(2024, 6, 1)


def cut(probability: float) -> float:
    return math.floor(probability * 1000 + 1e-9) / 10


@pytest.mark.parametrize(
    ("age", "male", "egfr", "acr", "two_year", "five_year"),
    [(63, False, 45, 30, 0.4, 1.3), (55, True, 38, 150, 2.9, 9.0)],
)
def test_the_published_calculator_examples_are_reproduced(age, male, egfr, acr, two_year, five_year):
    found = {
        years: cut(
            kfre_risk(age=age, male=male, egfr_ml_min=egfr, uacr_mg_g=acr, years=years, calibration=NORTH_AMERICAN)
        )
        for years in (2, 5)
    }
    assert found == {2: two_year, 5: five_year}


def test_the_non_north_american_calibration_gives_a_lower_risk_from_the_same_inputs():
    inputs = {"age": 55, "male": True, "egfr_ml_min": 38, "uacr_mg_g": 150}
    for years in (2, 5):
        assert kfre_risk(**inputs, years=years, calibration=NON_NORTH_AMERICAN) < kfre_risk(
            **inputs, years=years, calibration=NORTH_AMERICAN
        )
    # 1 - 0.9365 ^ exp(LP) with LP of the example above: 7.5% (North American 9.0%)
    assert round(kfre_risk(**inputs, years=5, calibration=NON_NORTH_AMERICAN) * 100, 1) == 7.5


def patient(gender: str, birth: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p", "gender": gender, "birthDate": birth}


def observation(code: str, value: float, unit: str, day: str = "2024-05-20") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{code}-{value}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": f"{day}T08:00:00+00:00",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def run(person: dict[str, Any], creatinine: float, acr: float, acr_unit: str = "mg/g", model: Any = None):  # type: ignore[no-untyped-def]
    model = model or get_model("kfre-4-variable")
    inputs = {
        "patient": [person],
        "creatinine": [observation("2160-0", creatinine, "mg/dL")],
        "uacr": [observation("9318-7", acr, acr_unit)],
    }
    return model.run(inputs, as_of=AS_OF)


def test_a_record_gives_the_published_example_through_the_ckd_epi_2021_egfr():
    # 55-year-old man, creatinine 2.01 mg/dL: CKD-EPI 2021 reports 38; ACR 150 mg/g.
    result = run(patient("male", "1969-01-15"), 2.01, 150)
    assert result.succeeded
    assert result.outputs["egfr_ml_min_1_73m2"] == 38
    assert (result.outputs["risk_2y_percent"], result.outputs["risk_5y_percent"]) == (3.0, 9.0)
    assert result.outputs["risk_5y_percent_non_north_american"] == 7.5
    assert result.outputs["ckd_stage"] == "G3b A2"
    assert "NICE NG203" in result.outputs["thresholds"]
    assert result.summary.startswith("Estimated risk of kidney failure (dialysis or transplant): 3.0% within 2 years")


def test_acr_in_mg_per_mmol_is_converted():
    # 150 mg/g is 16.97 mg/mmol
    result = run(patient("male", "1969-01-15"), 2.01, 16.97, "mg/mmol")
    assert result.outputs["uacr_mg_g"] == 150.0


def test_a_deployment_may_choose_the_non_north_american_calibration():
    result = run(patient("male", "1969-01-15"), 2.01, 150, model=Kfre4Variable(calibration=NON_NORTH_AMERICAN))
    assert (result.outputs["calibration"], result.outputs["risk_5y_percent"]) == (NON_NORTH_AMERICAN, 7.5)
    assert result.outputs["risk_5y_percent_north_american"] == 9.0


def test_an_egfr_of_60_or_more_is_outside_the_population_and_refused_with_its_range():
    # 70-year-old man: creatinine 1.28 reports 60 (G2), 1.30 reports 59 (G3a).
    assert run(patient("male", "1954-01-01"), 1.28, 150).reasons == [
        {"input": "egfr", "kind": "out-of-range", "range": [1.0, 59.0], "unit": "mL/min/1.73 m2"}
    ]
    assert run(patient("male", "1954-01-01"), 1.30, 150).succeeded


def test_a_child_a_missing_ratio_and_a_zero_ratio_are_each_refused_with_their_reason():
    assert run(patient("female", "2010-01-01"), 2.0, 150).reasons[0] == {
        "input": "age",
        "kind": "out-of-range",
        "range": [18, 120],
        "unit": "years",
    }
    assert run(patient("male", "1969-01-15"), 2.01, 0).reasons == [
        {"input": "uacr", "kind": "out-of-range", "range": [0.1, 30000.0], "unit": "mg/g"}
    ]
    result = get_model("kfre-4-variable").run(
        {"patient": [patient("male", "1969-01-15")], "creatinine": [observation("2160-0", 2.01, "mg/dL")]}, as_of=AS_OF
    )
    assert result.reasons == [{"input": "uacr", "kind": "missing", "window_days": 365}]


def test_an_implausible_creatinine_is_refused_before_any_egfr_is_computed():
    assert run(patient("male", "1969-01-15"), 0.01, 150).reasons == [
        {"input": "creatinine", "kind": "out-of-range", "range": [0.2, 20.0], "unit": "mg/dL"}
    ]
