"""The FHIR surface of jobs: $diagnose answers 202 with a Task; the Task is for its requester and the patient only."""

from __future__ import annotations

import secrets
from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from diagnostics.models import DiagnosticJob
from diagnostics.services import diagnostic_job_execute
from tests.diagnostics.jobs_support import *  # noqa: F403
from tests.diagnostics.jobs_support import SPEC

pytestmark = pytest.mark.django_db


def _client(user, scope: str = "user/*.cruds") -> Client:  # type: ignore[no-untyped-def]
    from oauth2_provider.models import AccessToken

    token = secrets.token_urlsafe(32)
    AccessToken.objects.create(user=user, token=token, expires=timezone.now() + timedelta(hours=1), scope=scope)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def fhir_urls():  # type: ignore[no-untyped-def]
    """The project's own URLconf: /fhir routes $diagnose and Task through api.urls.FHIR_EXTENSIONS."""


def _diagnose(client: Client, patient_fhir_id: str, query: str = f"model={SPEC.id}", **headers: str):  # type: ignore[no-untyped-def]
    return client.post(f"/fhir/Patient/{patient_fhir_id}/$diagnose?{query}", headers=headers)


def test_a_granted_clinician_queues_a_job_and_follows_its_task_to_the_result(
    fhir_urls, seam_model, run_model_grant, alice_record, clinician
):
    run_model_grant()
    alice_record.refresh_from_db()
    carol = _client(clinician)

    answer = _diagnose(carol, alice_record.fhir_id)

    assert answer.status_code == 202
    task = orjson.loads(answer.content)
    job = DiagnosticJob.objects.get()
    assert answer["Content-Location"] == answer["Location"] == f"/fhir/Task/{job.id}"
    assert answer["Content-Type"].startswith("application/fhir+json")
    assert (task["resourceType"], task["id"], task["status"], task["intent"]) == (
        "Task",
        str(job.id),
        "requested",
        "order",
    )
    assert task["for"] == {"reference": f"Patient/{alice_record.fhir_id}"}
    assert task["focus"]["identifier"]["value"] == SPEC.id
    assert "output" not in task

    diagnostic_job_execute(job_id=str(job.id))
    done = orjson.loads(carol.get(f"/fhir/Task/{job.id}").content)
    assert (done["status"], done["businessStatus"]["text"]) == ("completed", "Result released")
    outputs = [o["valueReference"]["reference"] for o in done["output"]]
    result = job.result
    assert outputs == [
        "/".join(result.risk_assessment_ref.split("/")[:2]),
        "/".join(result.provenance_ref.split("/")[:2]),
    ]


def test_the_patient_sees_tasks_run_on_her_record_and_runs_her_own(
    fhir_urls, seam_model, run_model_grant, alice_record, clinician, patient_user
):
    run_model_grant()
    alice_record.refresh_from_db()
    carols = orjson.loads(_diagnose(_client(clinician), alice_record.fhir_id).content)
    alice = _client(patient_user)
    assert alice.get(f"/fhir/Task/{carols['id']}").status_code == 200

    own = _diagnose(alice, alice_record.fhir_id)
    assert own.status_code == 202
    assert orjson.loads(own.content)["reasonCode"]["coding"][0]["code"] == "PATRQT"


def test_everyone_else_gets_what_a_stranger_gets_for_a_task_that_does_not_exist(
    fhir_urls, seam_model, run_model_grant, alice_record, clinician, other_clinician, other_patient, researcher
):
    run_model_grant()
    alice_record.refresh_from_db()
    task = orjson.loads(_diagnose(_client(clinician), alice_record.fhir_id).content)
    missing = _client(other_clinician).get("/fhir/Task/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    for persona in (other_clinician, other_patient.user, researcher):
        answer = _client(persona).get(f"/fhir/Task/{task['id']}")
        assert (answer.status_code, answer.content) == (404, missing.content)
    assert _client(other_clinician).get("/fhir/Task/not-a-uuid").content == missing.content


def test_diagnose_without_consent_answers_exactly_like_an_unknown_patient(
    fhir_urls, seam_model, alice_record, other_clinician
):
    alice_record.refresh_from_db()
    mallory = _client(other_clinician)
    refused = _diagnose(mallory, alice_record.fhir_id)
    unknown = _diagnose(mallory, "no-such-patient")
    assert (refused.status_code, refused.content) == (404, unknown.content)
    assert DiagnosticJob.objects.count() == 0


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("model=no-such-model", "unknown model 'no-such-model'"),
        ("", "the model parameter is required"),
        (f"model={SPEC.id}&as-of=yesterday", "as-of must be a date"),
        (f"model={SPEC.id}&foo=1", "unsupported parameter(s): foo"),
    ],
)
def test_a_bad_diagnose_request_is_a_400_operation_outcome(
    fhir_urls, seam_model, alice_record, patient_user, query, expected
):
    alice_record.refresh_from_db()
    answer = _diagnose(_client(patient_user), alice_record.fhir_id, query)
    outcome = orjson.loads(answer.content)
    assert (answer.status_code, outcome["resourceType"]) == (400, "OperationOutcome")
    assert outcome["issue"][0]["diagnostics"].startswith(expected)


def test_diagnose_needs_a_bearer_token_and_a_task_scope(fhir_urls, seam_model, alice_record, patient_user):
    alice_record.refresh_from_db()
    assert _diagnose(Client(), alice_record.fhir_id).status_code == 401
    assert _diagnose(_client(patient_user, scope="patient/Observation.rs"), alice_record.fhir_id).status_code == 403


def test_a_clinician_cannot_run_a_treatment_model_under_another_purpose(
    fhir_urls, seam_model, run_model_grant, alice_record, clinician
):
    run_model_grant()
    alice_record.refresh_from_db()
    answer = _diagnose(_client(clinician), alice_record.fhir_id, **{"X-Purpose-Of-Use": "HRESCH"})
    assert answer.status_code == 400


def test_tasks_validate_as_r4b_in_every_state(fhir_urls, seam_model, alice_record, patient_user):
    from fhir.resources.R4B.task import Task

    alice_record.refresh_from_db()
    client = _client(patient_user)
    task_id = orjson.loads(_diagnose(client, alice_record.fhir_id).content)["id"]
    for status, reason in [("queued", ""), ("running", ""), ("denied", "consent-ended"), ("failed", "error")]:
        DiagnosticJob.objects.filter(pk=task_id).update(
            status=status, status_reason=reason, finished_at=timezone.now() if reason else None
        )
        Task.model_validate(orjson.loads(client.get(f"/fhir/Task/{task_id}").content))
    DiagnosticJob.objects.filter(pk=task_id).update(status="queued", status_reason="", finished_at=None)
    diagnostic_job_execute(job_id=task_id)
    Task.model_validate(orjson.loads(client.get(f"/fhir/Task/{task_id}").content))
