"""Value sets recognise diagnoses and drugs as real records write them: Synthea's and hand-written EHR resources."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from diagnostics.inference import get_model, inputs_from_resources
from diagnostics.inference.valueset import value_set
from tests.conftest import SYNTHEA_DIR
from tests.diagnostics.test_model_ascvd import AS_OF, RXNORM, SNOMED, bp_panel, patient, quantity, smoking

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
VALUE_SETS = ("ascvd-history", "diabetes", "antihypertensives", "statins", "glucose-lowering", "heart-failure")


def ehr_condition(system: str, code: str, display: str, *, clinical: str = "active", rid: str = "c1") -> dict:
    """A Condition as an EHR exports it: ICD-10-CM or SNOMED, with a display, no verification status."""
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]
        },
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "onsetDateTime": "2019-03-02",
    }


def ehr_medication(code: str, display: str, *, rid: str = "") -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": rid or f"m{code}",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": display}]},
        "authoredOn": "2023-01-10",
    }


def ascvd_record(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        patient("male", age=55),
        quantity("2093-3", 213),
        quantity("2085-9", 50),
        bp_panel(120),
        smoking(),
        *extra,
    ]


def run_ascvd(resources: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    model = get_model("ascvd-pce-2013")
    return model.run(inputs_from_resources(model.spec, resources), as_of=AS_OF)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_value_set_file_names_its_source_and_date(name):
    held = value_set(name)
    assert held.id == name
    assert len(held.source) > 40
    assert held.date == "2026-12-05"


def test_a_diabetic_on_three_antihypertensive_tablets_from_an_ehr_is_scored_diabetic_and_treated():
    record = ascvd_record(
        ehr_condition(ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"),
        ehr_medication("308135", "amlodipine 10 MG Oral Tablet"),
        ehr_medication("314077", "lisinopril 20 MG Oral Tablet"),
        ehr_medication("310798", "hydrochlorothiazide 25 MG Oral Tablet"),
    )
    result = run_ascvd(record)
    ln_age, ln_tc, ln_hdl, ln_sbp = math.log(55), math.log(213), math.log(50), math.log(120)
    by_hand = 12.344 * ln_age + 11.853 * ln_tc - 2.664 * ln_age * ln_tc - 7.990 * ln_hdl + 1.769 * ln_age * ln_hdl
    by_hand += 1.797 * ln_sbp + 0.658  # treated, diabetic
    assert result.outputs["treated_hypertension"] is True
    assert abs(result.outputs["individual_sum"] - by_hand) < 1e-4
    diabetes = next(c for c in result.contributions if c.name == "diabetes")
    assert diabetes.value is True
    assert "E11.9" in diabetes.rule


@pytest.mark.parametrize(
    ("system", "code"),
    [(SNOMED, "313436004"), (ICD10CM, "E11.9"), (ICD10CM, "E10.65"), (ICD10CM, "E13.9"), (SNOMED, "44054006")],
)
def test_diabetes_is_recognised_by_snomed_code_or_icd10cm_range(system, code):
    assert value_set("diabetes").match({"coding": [{"system": system, "code": code}]}) is not None


@pytest.mark.parametrize(("system", "code"), [(SNOMED, "15777000"), (ICD10CM, "R73.03"), (ICD10CM, "O24.419")])
def test_prediabetes_and_gestational_diabetes_are_not_diabetes(system, code):
    assert value_set("diabetes").match({"coding": [{"system": system, "code": code}]}) is None


@pytest.mark.parametrize(
    ("code", "display", "klass"),
    [
        ("999999", "Amlodipine 5 MG / Benazepril 10 MG Oral Capsule", "calcium channel blocker"),
        ("979492", "losartan potassium 50 MG Oral Tablet", "angiotensin receptor blocker"),
        ("315971", "Lasix 40mg", "loop diuretic"),
        ("123", "Toprol XL 50 MG", "beta blocker"),
    ],
)
def test_antihypertensives_are_recognised_by_ingredient_code_or_the_ingredient_in_the_display(code, display, klass):
    found = value_set("antihypertensives").match({"coding": [{"system": RXNORM, "code": code, "display": display}]})
    assert found is not None
    assert found.klass == klass


def test_a_drug_that_only_sounds_close_is_not_an_antihypertensive():
    concept = {"coding": [{"system": RXNORM, "code": "198405", "display": "Ibuprofen 100 MG Oral Tablet"}]}
    assert value_set("antihypertensives").match(concept) is None


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (ICD10CM, "I21.9"),
        (ICD10CM, "I25.10"),
        (ICD10CM, "I63.9"),
        (ICD10CM, "Z86.73"),
        (SNOMED, "422504002"),
        (SNOMED, "194828000"),
        (SNOMED, "22298006"),
    ],
)
def test_clinical_ascvd_is_recognised_by_icd10cm_range_or_snomed(system, code):
    assert value_set("ascvd-history").match({"coding": [{"system": system, "code": code}]}) is not None


@pytest.mark.parametrize("clinical", ["active", "resolved", "inactive", "remission"])
def test_a_past_myocardial_infarction_excludes_the_patient_whatever_its_clinical_status(clinical):
    result = run_ascvd(ascvd_record(ehr_condition(ICD10CM, "I21.9", "Acute myocardial infarction", clinical=clinical)))
    assert result.status == "insufficient-data"
    assert result.reasons == [{"input": "established_ascvd", "kind": "excluded"}]
    assert "Condition/c1 (I21.9 (Ischemic heart diseases), recorded 2019-03-02)" in result.contributions[0].rule


def test_a_refuted_myocardial_infarction_does_not_exclude():
    refuted = ehr_condition(SNOMED, "22298006", "Myocardial infarction", clinical="resolved")
    refuted["verificationStatus"] = {"coding": [{"code": "refuted"}]}
    assert run_ascvd(ascvd_record(refuted)).succeeded


def _synthea(resource_type: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted(SYNTHEA_DIR.glob("*.json")):
        for entry in json.loads(path.read_bytes()).get("entry", ()):
            if entry["resource"]["resourceType"] == resource_type:
                found.append(entry["resource"])
    return found


needs_synthea = pytest.mark.skipif(
    not SYNTHEA_DIR.is_dir(), reason="the shared Synthea fixtures are not beside the repo"
)


@needs_synthea
def test_every_synthea_drug_of_a_class_is_recognised_and_nothing_else_is():
    # The Synthea fixtures (40 bundles here, not the 80 the issue names) and the classes a pharmacist gives them.
    expected = {
        "antihypertensives": {"197361", "315971", "316049", "316052", "833036", "866414", "897718", "1719286"},
        "statins": {"259255", "312961", "316672"},
        "glucose-lowering": {"860975"},
    }
    codes = {c["code"] for r in _synthea("MedicationRequest") for c in r["medicationCodeableConcept"]["coding"]}
    for name, members in expected.items():
        held = value_set(name)
        recognised = {c for c in codes if held.match({"coding": [{"system": RXNORM, "code": c}]})}
        named = {
            c["code"]
            for r in _synthea("MedicationRequest")
            for c in r["medicationCodeableConcept"]["coding"]
            if held.match(r["medicationCodeableConcept"])
        }
        assert recognised | named == members, name


@needs_synthea
def test_every_synthea_cardiovascular_or_diabetic_condition_is_recognised():
    codes = {c["code"] for r in _synthea("Condition") for c in r["code"]["coding"]}
    history = {c for c in codes if value_set("ascvd-history").match({"coding": [{"system": SNOMED, "code": c}]})}
    diabetic = {c for c in codes if value_set("diabetes").match({"coding": [{"system": SNOMED, "code": c}]})}
    assert history == {"22298006", "399211009", "53741008", "230690007"}
    assert diabetic == {"44054006"}


def test_the_ascvd_result_lists_the_statin_benefit_groups_it_found():
    diabetic = ehr_condition(ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications")
    statin = ehr_medication("999001", "Rosuvastatin calcium 10 MG Oral Tablet")
    result = run_ascvd(ascvd_record(diabetic, statin, quantity("13457-7", 195)))
    assert result.outputs["statin_benefit_groups"] == (
        "LDL-C >= 190 mg/dL (195 mg/dL, Observation/13457-7-2024-05-01, 2024-05-01), "
        "diabetes aged 40-75 (Condition/c1), current statin use (MedicationRequest/m999001: rosuvastatin (statin))"
    )


def test_old_lipids_and_a_single_pressure_reading_are_flagged():
    record = [
        patient("male", age=55),
        quantity("2093-3", 213, day="2022-05-01"),
        quantity("2085-9", 50, day="2022-05-01"),
        bp_panel(120),
        smoking(),
    ]
    result = run_ascvd(record)
    assert result.outputs["data_warnings"] == (
        "lipids are more than a year old (2022-05-01); "
        "a single blood-pressure reading in the last year: the guideline averages two or more"
    )
    two_readings = ascvd_record(bp_panel(124, day="2024-02-01"))
    assert run_ascvd(two_readings).outputs["data_warnings"] == "none"
