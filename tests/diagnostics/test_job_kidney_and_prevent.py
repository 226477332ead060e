"""KFRE and PREVENT run as jobs like every model: inputs read through the gate, a RiskAssessment released."""

from __future__ import annotations

import orjson
import pytest

from diagnostics.models import JobResult
from diagnostics.services import diagnostic_job_execute, diagnostic_job_request
from records.models import Resource
from records.services import fhir_ingest
from tests.diagnostics.test_model_kfre import observation
from tests.diagnostics.test_model_prevent import record

pytestmark = pytest.mark.django_db


def _stored(patient, reference: str) -> dict:  # type: ignore[no-untyped-def]
    from consent.gate import Caller, resource_read
    from consent.purposes import Action

    kind, rid = reference.split("/")[:2]
    body = resource_read(
        caller=Caller(actor=patient.user, purpose="PATRQT"),
        patient=patient,
        resource_type=kind,
        resource_id=rid,
        action=Action.READ,
    )
    return orjson.loads(body)


def _valid(resource: dict) -> dict:
    # What R4 requires beyond what the models read: a subject, and a MedicationRequest's intent.
    if resource["resourceType"] in ("Condition", "MedicationRequest"):
        resource = {**resource, "subject": {"reference": "Patient/p"}}
    if resource["resourceType"] == "MedicationRequest":
        resource = {**resource, "intent": "order"}
    if "clinicalStatus" in resource:
        clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
        code = resource["clinicalStatus"]["coding"][0]["code"]
        resource = {**resource, "clinicalStatus": {"coding": [{"system": clinical, "code": code}]}}
    return resource


def _ingest(patient, resources) -> None:  # type: ignore[no-untyped-def]
    entries = [{"resource": _valid(r)} for r in resources]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    fhir_ingest(payload=orjson.dumps(bundle), actor="system:test", patient=patient)


def test_a_kfre_job_releases_the_5_year_risk_as_a_probability_over_5_years(patient, patient_user):
    _ingest(
        patient,
        [
            {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1969-01-15"},
            observation("2160-0", 2.01, "mg/dL"),
            observation("9318-7", 150, "mg/g"),
        ],
    )
    job = diagnostic_job_request(requester=patient_user, patient=patient, model_id="kfre-4-variable")
    assert diagnostic_job_execute(job_id=str(job.id)).status == "succeeded"
    job.refresh_from_db()
    assert job.as_of.isoformat() == "2024-05-20"  # dated by its newest input
    risk = _stored(patient, JobResult.objects.get(job=job).risk_assessment_ref)
    prediction = risk["prediction"][0]
    assert prediction["probabilityDecimal"] == 0.09
    assert prediction["whenRange"]["high"]["value"] == 5


def test_a_kfre_job_for_a_patient_on_dialysis_is_refused_naming_the_procedure_and_releases_nothing(
    patient, patient_user
):
    dialysis = {
        "resourceType": "Procedure",
        "id": "hd",
        "status": "completed",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "265764009"}]},
        "performedPeriod": {"start": "2024-05-18T08:00:00+00:00", "end": "2024-05-18T12:00:00+00:00"},
    }
    _ingest(
        patient,
        [
            {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1969-01-15"},
            observation("2160-0", 2.01, "mg/dL"),
            observation("9318-7", 150, "mg/g"),
            dialysis,
        ],
    )
    job = diagnostic_job_request(requester=patient_user, patient=patient, model_id="kfre-4-variable")
    assert diagnostic_job_execute(job_id=str(job.id)).status == "insufficient-data"
    job.refresh_from_db()
    assert job.reasons == [{"input": "dialysis", "kind": "excluded"}]
    assert job.reason_lines == ["dialysis: recorded, which puts the patient outside the model's intended population"]
    assert not Resource.objects.filter(patient=patient, resource_type="RiskAssessment").exists()


def test_a_prevent_job_with_heart_failure_on_record_is_refused_with_the_reason_and_releases_nothing(
    patient, patient_user
):
    failure = {
        "resourceType": "Condition",
        "id": "hf",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "88805009"}]},
        "clinicalStatus": {"coding": [{"code": "resolved"}]},
        "onsetDateTime": "2020-01-01",
    }
    _ingest(patient, [*record("male", creatinine=1.02), failure])
    job = diagnostic_job_request(requester=patient_user, patient=patient, model_id="prevent-base-2024")
    assert diagnostic_job_execute(job_id=str(job.id)).status == "insufficient-data"
    job.refresh_from_db()
    assert job.reasons == [{"input": "heart_failure", "kind": "excluded"}]
    assert job.reason_lines == [
        "heart failure: recorded, which puts the patient outside the model's intended population"
    ]
    assert not Resource.objects.filter(patient=patient, resource_type="RiskAssessment").exists()


def test_a_prevent_job_releases_the_published_example(patient, patient_user):
    _ingest(patient, record("female", creatinine=0.80))
    job = diagnostic_job_request(requester=patient_user, patient=patient, model_id="prevent-base-2024")
    assert diagnostic_job_execute(job_id=str(job.id)).status == "succeeded"
    risk = _stored(patient, JobResult.objects.get(job=job).risk_assessment_ref)
    assert risk["prediction"][0]["probabilityDecimal"] == 0.147
    assert risk["prediction"][0]["whenRange"]["high"]["value"] == 10
