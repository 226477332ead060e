"""The as-of date is the clinical date of an assessment: defaulted to the newest needed input, carried into the
RiskAssessment and its Provenance; eGFR is also released as a searchable Observation."""

from __future__ import annotations

import datetime

import orjson
import pytest

from consent.gate import Caller, resource_read
from diagnostics import fhir
from diagnostics.inference import get_model
from diagnostics.models import DiagnosticJob, JobResult
from diagnostics.services import diagnostic_job_execute, diagnostic_job_request
from records.models import Resource
from records.services import fhir_ingest
from tests.diagnostics.jobs_support import *  # noqa: F403

pytestmark = pytest.mark.django_db

PATIENT_URN = "urn:uuid:4f1c2b7e-2222-4c1e-9d55-5f4b4c2b0002"


def _record(patient, *creatinine_days: str) -> None:  # type: ignore[no-untyped-def]
    entries = [
        {
            "fullUrl": PATIENT_URN,
            "resource": {"resourceType": "Patient", "gender": "female", "birthDate": "1960-04-02"},
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    for day in creatinine_days:
        entries.append(
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
                    "subject": {"reference": PATIENT_URN},
                    "effectiveDateTime": f"{day}T08:00:00Z",
                    "valueQuantity": {
                        "value": 1.0,
                        "unit": "mg/dL",
                        "system": "http://unitsofmeasure.org",
                        "code": "mg/dL",
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    fhir_ingest(
        payload=orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        actor="t",
        patient=patient,
    )
    patient.refresh_from_db()


def _read(user, patient, reference: str) -> dict:  # type: ignore[no-untyped-def]
    kind, ident = reference.split("/")[:2]
    return orjson.loads(
        resource_read(caller=Caller(actor=user), patient=patient, resource_type=kind, resource_id=ident)
    )


def _run(user, patient, as_of: datetime.date | None = None) -> DiagnosticJob:  # type: ignore[no-untyped-def]
    job = diagnostic_job_request(requester=user, patient=patient, model_id="egfr-ckd-epi-2021", as_of=as_of)
    diagnostic_job_execute(job_id=str(job.id))
    job.refresh_from_db()
    return job


def test_a_job_without_an_as_of_date_is_dated_by_its_newest_input(patient, patient_user):
    _record(patient, "2019-02-01", "2021-03-04")
    job = _run(patient_user, patient)
    assert (job.status, job.as_of, job.as_of_from_inputs) == ("succeeded", datetime.date(2021, 3, 4), True)
    result = JobResult.objects.get(job=job)
    risk = _read(patient_user, patient, result.risk_assessment_ref)
    assert risk["occurrenceDateTime"] == "2021-03-04"
    prov = _read(patient_user, patient, result.provenance_ref)
    assert {"url": fhir.EXTENSION_BASE + "as-of", "valueDate": "2021-03-04"} in prov["extension"]
    assert "policy" not in prov  # her own record: no grant was needed


def test_an_explicit_as_of_date_long_after_the_last_creatinine_says_stale_with_the_window(patient, patient_user):
    _record(patient, "2021-03-04")
    job = _run(patient_user, patient, as_of=datetime.date(2024, 1, 1))
    assert (job.status, job.as_of) == ("insufficient-data", datetime.date(2024, 1, 1))
    assert job.reasons == [{"input": "creatinine", "kind": "stale", "window_days": 365}]
    assert job.status_reason == "creatinine: only values older than the 365 days before the as-of date"


def test_egfr_is_also_released_as_a_loinc_98979_8_observation_in_ucum_units(patient, patient_user):
    _record(patient, "2021-03-04")
    job = _run(patient_user, patient)
    prov = _read(patient_user, patient, JobResult.objects.get(job=job).provenance_ref)
    observation_ref = prov["target"][1]["reference"]
    observation = _read(patient_user, patient, observation_ref)
    assert observation["code"]["coding"][0]["code"] == "98979-8"
    assert observation["valueQuantity"] == {
        "value": 64,  # 142 x (1.0/0.7)^-1.2 x 0.9938^60 x 1.012 = 64.495
        "unit": "mL/min/{1.73_m2}",
        "system": "http://unitsofmeasure.org",
        "code": "mL/min/{1.73_m2}",
    }
    assert observation["effectiveDateTime"] == "2021-03-04"
    assert len(observation["derivedFrom"]) == 1
    assert observation["derivedFrom"][0]["reference"].startswith("Observation/")
    assert Resource.objects.filter(patient=patient, resource_type="Observation").count() == 2


def test_a_clinicians_provenance_names_the_grant_that_authorised_the_run(
    run_model_grant, alice_record, clinician, patient_user
):
    grant = run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id="egfr-ckd-epi-2021")
    diagnostic_job_execute(job_id=str(job.id))
    job.refresh_from_db()
    assert job.status == "succeeded", job.status_reason
    prov = _read(patient_user, alice_record, JobResult.objects.get(job=job).provenance_ref)
    assert prov["policy"] == [f"urn:healthledger:grant:{grant.id}"]


def test_a_ten_year_risk_has_a_when_range_a_coded_qualitative_risk_and_a_decimal_probability():
    spec = get_model("ascvd-pce-2013").spec
    risk = fhir.risk_assessment(
        resource_id="r1",
        job_id="j1",
        spec=spec,
        patient_fhir_id="p1",
        as_of=datetime.date(2024, 6, 1),
        outputs={"risk_10y_percent": 12.3, "category": "intermediate"},
        contributions=(),
        summary="",
        basis=(),
    )
    prediction = risk["prediction"][0]
    assert prediction["probabilityDecimal"] == 0.123
    assert prediction["whenRange"]["high"] == {
        "value": 10,
        "unit": "years",
        "system": "http://unitsofmeasure.org",
        "code": "a",
    }
    assert {"system": "http://terminology.hl7.org/CodeSystem/risk-probability", "code": "moderate"} in prediction[
        "qualitativeRisk"
    ]["coding"]
    assert risk["occurrenceDateTime"] == "2024-06-01"
    assert risk["note"][1] == {"text": f"Population: {spec.population}"}
    from fhir.resources.R4B.riskassessment import RiskAssessment

    RiskAssessment.model_validate(risk)
