"""The KFRE refuses a patient already treated for kidney failure: dialysis, a kidney transplant, end-stage disease.

Hand-written EHR-shaped resources (ICD-10-CM, ICD-10-PCS and CPT codes, periods, statuses) and the Synthea
shape (SNOMED CT 265764009 "Renal dialysis (procedure)" with a performedPeriod). None of the 40 Synthea
fixture patients is on dialysis or has a transplant, so the Synthea test adds a dialysis Procedure, copied
from the shape of that patient's own Procedures, to a patient the KFRE otherwise scores.
"""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from diagnostics.inference import get_model, inputs_from_resources
from diagnostics.inference.base import reason_words
from diagnostics.inference.valueset import value_set
from tests.conftest import SYNTHEA_DIR
from tests.diagnostics.test_model_kfre import AS_OF, observation, patient

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
CPT = "http://www.ama-assn.org/go/cpt"
EXCLUDED_WORDS = "recorded, which puts the patient outside the model's intended population"


def procedure(system: str, code: str, day: str, *, status: str = "completed", rid: str = "x1") -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": status,
        "code": {"coding": [{"system": system, "code": code}]},
        "performedPeriod": {"start": f"{day}T07:00:00-05:00", "end": f"{day}T11:00:00-05:00"},
    }


def condition(system: str, code: str, *, clinical: str = "active", verification: str = "confirmed") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "c1",
        "clinicalStatus": {"coding": [{"code": clinical}]},
        "verificationStatus": {"coding": [{"code": verification}]},
        "code": {"coding": [{"system": system, "code": code}]},
        "onsetDateTime": "2019-03-02",
    }


def kfre(*extra: dict[str, Any], as_of: date = AS_OF):  # type: ignore[no-untyped-def]
    # The 55-year-old man of the published example (eGFR 38, ACR 150 mg/g): 3.0% / 9.0% when nothing excludes him.
    resources = [
        patient("male", "1969-01-15"),
        observation("2160-0", 2.01, "mg/dL"),
        observation("9318-7", 150, "mg/g"),
        *extra,
    ]
    model = get_model("kfre-4-variable")
    return model.run(inputs_from_resources(model.spec, resources), as_of=as_of)


@pytest.mark.parametrize(
    ("system", "code", "klass"),
    [
        (SNOMED, "265764009", "dialysis"),
        (SNOMED, "302497006", "dialysis"),
        (SNOMED, "71192002", "dialysis"),
        (SNOMED, "105502003", "dialysis"),
        (ICD10CM, "Z99.2", "dialysis"),
        (ICD10CM, "Z49.01", "dialysis"),
        (CPT, "90935", "dialysis"),
        (ICD10PCS, "5A1D70Z", "dialysis"),
        (SNOMED, "70536003", "kidney_transplant"),
        (ICD10CM, "Z94.0", "kidney_transplant"),
        (ICD10CM, "T86.11", "kidney_transplant"),
        (CPT, "50360", "kidney_transplant"),
        (ICD10PCS, "0TY00Z0", "kidney_transplant"),
        (SNOMED, "46177005", "kidney_failure"),
        (ICD10CM, "N18.6", "kidney_failure"),
    ],
)
def test_dialysis_transplant_and_end_stage_disease_are_recognised_with_their_class(system, code, klass):
    found = value_set("kidney-replacement-therapy").match({"coding": [{"system": system, "code": code}]})
    assert found is not None
    assert found.klass == klass


@pytest.mark.parametrize(
    ("system", "code"),
    [(ICD10CM, "N18.4"), (ICD10CM, "N18.5"), (ICD10CM, "N17.9"), (SNOMED, "431857002"), (SNOMED, "433146000")],
)
def test_chronic_kidney_disease_before_kidney_failure_is_not_treated_kidney_failure(system, code):
    # CKD G4 and G5 not on dialysis, and acute kidney injury, are the patients the KFRE is for (or not about).
    assert value_set("kidney-replacement-therapy").match({"coding": [{"system": system, "code": code}]}) is None


def test_the_published_example_is_scored_when_nothing_excludes_him():
    result = kfre()
    assert result.succeeded
    assert (result.outputs["risk_2y_percent"], result.outputs["risk_5y_percent"]) == (3.0, 9.0)


def test_a_hemodialysis_session_last_week_excludes_the_patient_naming_the_procedure():
    result = kfre(procedure(CPT, "90935", "2024-05-25", rid="hd1"))
    assert result.status == "insufficient-data"
    assert result.reasons == [{"input": "dialysis", "kind": "excluded"}]
    assert result.contributions[0].rule.startswith(
        "Procedure/hd1 (Hemodialysis procedure with single evaluation, performed 2024-05-25) is dialysis: "
        "the KFRE predicts kidney failure"
    )
    assert reason_words(result.reasons[0]) == f"dialysis: {EXCLUDED_WORDS}"
    assert result.outputs == {}


def test_a_dialysis_procedure_older_than_90_days_alone_may_have_been_acute_and_does_not_exclude():
    assert kfre(procedure(ICD10PCS, "5A1D70Z", "2024-02-01")).succeeded  # 121 days before the as-of date
    assert not kfre(procedure(ICD10PCS, "5A1D70Z", "2024-03-05")).succeeded  # 88 days before


def test_a_kidney_transplant_years_ago_excludes_the_patient():
    result = kfre(procedure(SNOMED, "70536003", "2012-08-14", rid="tx"))
    assert result.reasons == [{"input": "kidney_transplant", "kind": "excluded"}]
    assert "Procedure/tx (Transplantation of kidney, performed 2012-08-14) is a kidney transplant" in (
        result.contributions[0].rule
    )
    assert reason_words(result.reasons[0]) == f"kidney transplant: {EXCLUDED_WORDS}"


@pytest.mark.parametrize("clinical", ["active", "resolved", "inactive"])
def test_end_stage_kidney_disease_on_the_problem_list_excludes_whatever_its_status(clinical):
    result = kfre(condition(ICD10CM, "N18.6", clinical=clinical))
    assert result.reasons == [{"input": "kidney_failure", "kind": "excluded"}]
    assert "Condition/c1 (N18.6 (End stage renal disease), recorded 2019-03-02) is end-stage kidney disease" in (
        result.contributions[0].rule
    )
    assert reason_words(result.reasons[0]) == f"end-stage kidney disease: {EXCLUDED_WORDS}"


def test_dependence_on_dialysis_and_a_transplant_status_are_each_named():
    result = kfre(condition(ICD10CM, "Z99.2"), {**condition(ICD10CM, "Z94.0"), "id": "c2"})
    assert result.reasons == [
        {"input": "dialysis", "kind": "excluded"},
        {"input": "kidney_transplant", "kind": "excluded"},
    ]


@pytest.mark.parametrize("status", ["not-done", "entered-in-error", "preparation"])
def test_a_procedure_that_did_not_happen_does_not_exclude(status):
    assert kfre(procedure(CPT, "90935", "2024-05-25", status=status)).succeeded


def test_a_refuted_diagnosis_and_a_procedure_after_the_as_of_date_do_not_exclude():
    assert kfre(condition(ICD10CM, "N18.6", verification="refuted")).succeeded
    assert kfre(procedure(SNOMED, "70536003", "2024-07-01")).succeeded


def test_the_exclusion_comes_with_the_other_reasons_the_model_has():
    # A transplant recipient with an eGFR of 60 or more: both are said, the exclusion first.
    resources = [patient("male", "1969-01-15"), observation("2160-0", 1.0, "mg/dL"), observation("9318-7", 150, "mg/g")]
    model = get_model("kfre-4-variable")
    inputs = inputs_from_resources(model.spec, [*resources, condition(SNOMED, "161665007")])
    assert [r["input"] for r in model.run(inputs, as_of=AS_OF).reasons] == ["kidney_transplant", "egfr"]


# --- Synthea -------------------------------------------------------------------------------------------


def _synthea_kfre_patient() -> list[dict[str, Any]]:
    # The one fixture patient with a urine albumin-to-creatinine ratio; the KFRE needs it.
    from tests.diagnostics.test_synthea_scoring import _bundles

    for _, resources in _bundles():
        if any(r["resourceType"] == "Observation" and "14959-1" in str(r["code"]) for r in resources):
            return list(resources)
    raise AssertionError("no Synthea patient with a urine albumin-to-creatinine ratio")


synthea = pytest.mark.skipif(not SYNTHEA_DIR.is_dir(), reason="the shared Synthea fixtures are not beside the repo")


@synthea
@pytest.mark.slow
def test_no_synthea_fixture_patient_is_on_dialysis_or_has_a_transplant():
    from tests.diagnostics.test_synthea_scoring import _as_of, _bundles

    model = get_model("kfre-4-variable")
    for _, resources in _bundles():
        inputs = inputs_from_resources(model.spec, resources)
        assert inputs["kidney_replacement_condition"] == []
        assert inputs["kidney_replacement_procedure"] == []
        named = {r["input"] for r in model.run(inputs, as_of=_as_of(resources)).reasons}
        assert not named & {"dialysis", "kidney_transplant", "kidney_failure"}


@synthea
@pytest.mark.slow
def test_a_synthea_renal_dialysis_procedure_excludes_the_patient():
    from tests.diagnostics.test_synthea_scoring import _as_of, _bundles

    resources = _synthea_kfre_patient()
    as_of = _as_of(tuple(resources))
    # Synthea's own shape: a fixture Procedure (this patient has none) with the code Synthea's dialysis module
    # writes, made this patient's.
    template = next(r for _, bundle in _bundles() for r in bundle if r["resourceType"] == "Procedure")
    dialysis = copy.deepcopy(template)
    dialysis["id"] = "synthea-dialysis"
    dialysis["subject"] = next(r for r in resources if r["resourceType"] == "Observation")["subject"]
    dialysis.pop("encounter", None)
    dialysis["code"] = {
        "coding": [{"system": SNOMED, "code": "265764009", "display": "Renal dialysis (procedure)"}],
        "text": "Renal dialysis (procedure)",
    }
    day = as_of.isoformat()
    dialysis["performedPeriod"] = {"start": f"{day}T00:31:18+00:00", "end": f"{day}T04:31:18+00:00"}
    model = get_model("kfre-4-variable")
    before = model.run(inputs_from_resources(model.spec, resources), as_of=as_of)
    after = model.run(inputs_from_resources(model.spec, [*resources, dialysis]), as_of=as_of)
    assert {"input": "dialysis", "kind": "excluded"} not in before.reasons
    assert after.reasons[0] == {"input": "dialysis", "kind": "excluded"}
    assert after.contributions[0].rule.startswith(f"Procedure/synthea-dialysis (Renal dialysis, performed {day})")
