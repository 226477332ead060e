"""Why a model could not run reaches the job, the FHIR Task and the portal, in plain words; its values only sealed."""

from __future__ import annotations

import secrets
from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from consent.services import patient_record_erase
from diagnostics.models import DiagnosticJob
from diagnostics.selectors import job_reason_detail
from diagnostics.services import diagnostic_job_execute, diagnostic_job_request
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db

OUT_OF_RANGE = {"input": "creatinine", "kind": "out-of-range", "range": [0.2, 20.0], "unit": "mg/dL"}


def _client(user) -> Client:  # type: ignore[no-untyped-def]
    from oauth2_provider.models import AccessToken

    token = secrets.token_urlsafe(32)
    AccessToken.objects.create(
        user=user, token=token, expires=timezone.now() + timedelta(hours=1), scope="user/*.cruds"
    )
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _record_with_creatinine(patient, value: float) -> None:  # type: ignore[no-untyped-def]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:9b0e7f4e-1111-4c1e-9d55-5f4b4c2b0001",
                "resource": {"resourceType": "Patient", "gender": "female", "birthDate": "1974-03-02"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
                    "subject": {"reference": "urn:uuid:9b0e7f4e-1111-4c1e-9d55-5f4b4c2b0001"},
                    "effectiveDateTime": timezone.now().date().isoformat(),
                    "valueQuantity": {
                        "value": value,
                        "unit": "mg/dL",
                        "system": "http://unitsofmeasure.org",
                        "code": "mg/dL",
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    fhir_ingest(payload=orjson.dumps(bundle), actor="system:test", patient=patient)
    patient.refresh_from_db()


@pytest.fixture
def implausible_job(patient, patient_user) -> DiagnosticJob:  # type: ignore[no-untyped-def]
    _record_with_creatinine(patient, 0.01)
    job = diagnostic_job_request(requester=patient_user, patient=patient, model_id="egfr-ckd-epi-2021")
    assert diagnostic_job_execute(job_id=str(job.id)).status == "insufficient-data"
    job.refresh_from_db()
    return job


def test_an_implausible_creatinine_is_kept_as_a_structured_reason_without_its_value(implausible_job):
    assert implausible_job.reasons == [OUT_OF_RANGE]
    assert implausible_job.status_reason == "creatinine: outside the range the model accepts (0.2-20 mg/dL)"
    assert "0.01" not in implausible_job.reason_detail  # sealed
    assert job_reason_detail(implausible_job) == (
        "creatinine: 0.01 mg/dL is outside what a serum creatinine can be (0.2-20 mg/dL)"
    )


def test_the_task_codes_each_reason_and_says_it_in_plain_words(implausible_job, patient_user):
    task = orjson.loads(_client(patient_user).get(f"/fhir/Task/{implausible_job.id}").content)
    assert task["status"] == "completed"
    assert task["statusReason"] == {
        "coding": [
            {
                "system": "urn:healthledger:diagnostic-reason",
                "code": "out-of-range",
                "display": "creatinine: outside the range the model accepts (0.2-20 mg/dL)",
            }
        ],
        "text": "creatinine: outside the range the model accepts (0.2-20 mg/dL)",
    }
    assert task["note"] == [{"text": "creatinine: 0.01 mg/dL is outside what a serum creatinine can be (0.2-20 mg/dL)"}]


def test_a_clinician_without_access_cannot_read_the_task_or_its_reasons(implausible_job, other_clinician):
    assert _client(other_clinician).get(f"/fhir/Task/{implausible_job.id}").status_code == 404


def test_after_erasure_the_reason_keeps_its_kind_and_loses_its_words(
    implausible_job, patient, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        patient_record_erase(patient=patient, actor="system:test")
    implausible_job.refresh_from_db()
    assert implausible_job.reasons == [OUT_OF_RANGE]
    assert "0.01" not in job_reason_detail(implausible_job)
    assert job_reason_detail(implausible_job) == "[erased]"
