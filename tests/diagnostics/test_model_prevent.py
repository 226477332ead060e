"""AHA PREVENT base equations against published reference values.

Reference values: the worked example of the preventr package (0.12.0, README and tests/testthat/
test-estimate_risk.R "Base model works, female/male"): age 50, systolic 160 mm Hg on antihypertensive
treatment, total cholesterol 200 and HDL 45 mg/dL, no statin, diabetes, not smoking, eGFR 90, BMI 35.
10-year risk, female: total CVD 14.7%, ASCVD 9.2%, heart failure 8.1%; male: 16.3%, 10.2%, 10.6%.
The coefficient file itself was checked against two independent transcriptions (see its source).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from diagnostics.inference import get_model, inputs_from_resources
from diagnostics.inference.prevent import OUTCOMES, coefficients, risk, terms

AS_OF = date(2024, 6, 1)
EXAMPLE = {
    "age": 50,
    "total_cholesterol_mg_dl": 200,
    "hdl_mg_dl": 45,
    "sbp": 160,
    "bmi": 35,
    "egfr_ml_min": 90,
    "diabetes": True,
    "smoker": False,
    "antihypertensive": True,
    "statin": False,
}
PUBLISHED = {
    "female": {"total_cvd": 14.7, "ascvd": 9.2, "heart_failure": 8.1},
    "male": {"total_cvd": 16.3, "ascvd": 10.2, "heart_failure": 10.6},
}


@pytest.mark.parametrize("sex", ["female", "male"])
def test_the_published_worked_example_is_reproduced(sex):
    predictors = terms(**EXAMPLE)
    assert {o: round(risk(o, sex, predictors) * 100, 1) for o in OUTCOMES} == PUBLISHED[sex]


def test_the_coefficient_file_names_its_source_and_holds_every_term_for_every_equation():
    data = coefficients()
    assert "Circulation 2024;149:430-449" in data["source"]
    assert "preventr" in data["source"]
    for outcome in OUTCOMES:
        for sex in ("female", "male"):
            assert set(data["equations"][outcome][sex]) == set(data["terms"])
    # Spot values of the published table (female total CVD age, male heart failure constant).
    assert data["equations"]["total_cvd"]["female"]["age"] == 0.7939329
    assert data["equations"]["heart_failure"]["male"]["constant"] == -3.946391
    raw = (Path(__file__).resolve().parents[2] / "diagnostics/inference/coefficients/prevent-base-10y.json").read_text()
    assert json.loads(raw) == data


def coded(resource_type: str, system: str, code: str, rid: str, **extra: Any) -> dict[str, Any]:
    element = "medicationCodeableConcept" if resource_type == "MedicationRequest" else "code"
    return {"resourceType": resource_type, "id": rid, element: {"coding": [{"system": system, "code": code}]}, **extra}


def quantity(code: str, value: float, unit: str, rid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": "2024-05-20T09:00:00+00:00",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def record(sex: str, *, creatinine: float, birth: str = "1974-01-10", extra: tuple = ()) -> list[dict[str, Any]]:
    snomed, rxnorm = "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm"
    return [
        {"resourceType": "Patient", "id": "p", "gender": sex, "birthDate": birth},
        quantity("2093-3", 200, "mg/dL", "tc"),
        quantity("2085-9", 45, "mg/dL", "hdl"),
        quantity("8480-6", 160, "mm[Hg]", "sbp"),
        quantity("39156-5", 35, "kg/m2", "bmi"),
        quantity("2160-0", creatinine, "mg/dL", "scr"),
        {
            **coded("Observation", "http://loinc.org", "72166-2", "smoke", status="final"),
            "effectiveDateTime": "2024-05-20",
            "valueCodeableConcept": {"coding": [{"system": snomed, "code": "266919005"}]},
        },
        coded("Condition", snomed, "44054006", "dm", clinicalStatus={"coding": [{"code": "active"}]}),
        coded("MedicationRequest", rxnorm, "314077", "lisinopril", status="active", authoredOn="2023-01-01"),
        *extra,
    ]


def run(resources: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    model = get_model("prevent-base-2024")
    return model.run(inputs_from_resources(model.spec, resources), as_of=AS_OF)


@pytest.mark.parametrize(("sex", "creatinine"), [("female", 0.80), ("male", 1.02)])
def test_a_record_gives_the_published_example(sex, creatinine):
    # Age 50; creatinine 0.80 mg/dL (female) or 1.02 mg/dL (male) reports a CKD-EPI 2021 eGFR of 90.
    result = run(record(sex, creatinine=creatinine))
    assert result.succeeded, result.reasons
    assert result.outputs["egfr_ml_min_1_73m2"] == 90
    published = PUBLISHED[sex]
    assert (
        result.outputs["risk_10y_percent"],
        result.outputs["ascvd_10y_percent"],
        result.outputs["heart_failure_10y_percent"],
    ) == (published["total_cvd"], published["ascvd"], published["heart_failure"])
    assert result.outputs["treated_hypertension"] is True
    assert result.summary.startswith(f"Estimated 10-year risk: total cardiovascular disease {published['total_cvd']}%")


def test_ages_outside_30_to_79_and_an_egfr_below_15_are_refused_with_their_ranges():
    assert run(record("female", creatinine=0.8, birth="1996-01-10")).reasons == [
        {"input": "age", "kind": "out-of-range", "range": [30, 79], "unit": "years"}
    ]
    assert run(record("female", creatinine=6.0)).reasons == [
        {"input": "egfr", "kind": "out-of-range", "range": [15.0, 140.0], "unit": "mL/min/1.73 m2"}
    ]


def test_an_implausible_bmi_or_pressure_is_refused_with_the_range_the_equations_accept():
    high_bp = [r for r in record("male", creatinine=1.02) if r["id"] != "sbp"] + [
        quantity("8480-6", 190, "mm[Hg]", "sbp2")
    ]
    assert run(high_bp).reasons == [
        {"input": "systolic_bp", "kind": "out-of-range", "range": [90, 180], "unit": "mm Hg"}
    ]


def test_known_heart_failure_or_ascvd_excludes_the_patient_whatever_its_status():
    snomed = "http://snomed.info/sct"
    failure = coded("Condition", snomed, "88805009", "hf", clinicalStatus={"coding": [{"code": "resolved"}]})
    result = run(record("male", creatinine=1.02, extra=(failure,)))
    assert result.reasons == [{"input": "heart_failure", "kind": "excluded"}]
    infarction = coded(
        "Condition",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "I21.9",
        "mi",
        clinicalStatus={"coding": [{"code": "inactive"}]},
    )
    assert run(record("male", creatinine=1.02, extra=(infarction,))).reasons == [
        {"input": "established_ascvd", "kind": "excluded"}
    ]


def test_a_missing_bmi_is_named():
    result = run([r for r in record("male", creatinine=1.02) if r["id"] != "bmi"])
    assert result.reasons == [{"input": "bmi", "kind": "missing", "window_days": 730}]
