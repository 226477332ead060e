"""$diagnose is declared (CapabilityStatement, OperationDefinition) and takes a standard Parameters body."""

from __future__ import annotations

import secrets
from datetime import date, timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone
from fhir.resources.R4B.operationdefinition import OperationDefinition

from diagnostics.models import DiagnosticJob
from tests.diagnostics.jobs_support import *  # noqa: F403
from tests.diagnostics.jobs_support import SPEC

pytestmark = pytest.mark.django_db

FHIR_JSON = "application/fhir+json"


def _client(user, scope: str = "user/*.cruds") -> Client:  # type: ignore[no-untyped-def]
    from oauth2_provider.models import AccessToken

    token = secrets.token_urlsafe(32)
    AccessToken.objects.create(user=user, token=token, expires=timezone.now() + timedelta(hours=1), scope=scope)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _parameters(**values: dict[str, str]) -> bytes:
    return orjson.dumps({"resourceType": "Parameters", "parameter": [{"name": n, **v} for n, v in values.items()]})


def _diagnose(client: Client, patient_fhir_id: str, body: bytes, query: str = ""):  # type: ignore[no-untyped-def]
    url = f"/fhir/Patient/{patient_fhir_id}/$diagnose" + (f"?{query}" if query else "")
    return client.post(url, data=body, content_type=FHIR_JSON)


def test_the_capability_statement_declares_diagnose_with_a_resolvable_operation_definition(api):
    statement = orjson.loads(api.get("/fhir/metadata").content)
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert patient["operation"] == [
        {"name": "diagnose", "definition": "http://testserver/fhir/OperationDefinition/Patient-diagnose"},
        {"name": "everything", "definition": "http://testserver/fhir/OperationDefinition/Patient-everything"},
        {"name": "export", "definition": "http://testserver/fhir/OperationDefinition/Patient-export"},
    ]
    response = api.get("/fhir/OperationDefinition/Patient-diagnose")
    definition = orjson.loads(response.content)
    OperationDefinition.model_validate(definition)
    assert (definition["code"], definition["resource"], definition["instance"]) == ("diagnose", ["Patient"], True)
    assert [(p["name"], p["use"], p["min"], p["type"]) for p in definition["parameter"]] == [
        ("model", "in", 1, "string"),
        ("as-of", "in", 0, "date"),
        ("return", "out", 1, "Task"),
    ]
    assert api.get("/fhir/OperationDefinition/Patient-nothing").status_code == 404


def test_a_granted_clinician_queues_a_job_with_a_parameters_body(seam_model, run_model_grant, alice_record, clinician):
    run_model_grant()
    alice_record.refresh_from_db()
    as_of = (timezone.now().date() - timedelta(days=3)).isoformat()
    body = _parameters(model={"valueString": SPEC.id}, **{"as-of": {"valueDate": as_of}})

    answer = _diagnose(_client(clinician), alice_record.fhir_id, body)

    assert answer.status_code == 202
    job = DiagnosticJob.objects.get()
    assert (job.model_id, job.as_of, job.requester_id) == (SPEC.id, date.fromisoformat(as_of), clinician.pk)
    assert orjson.loads(answer.content)["resourceType"] == "Task"


@pytest.mark.parametrize(
    ("body", "query", "expected"),
    [
        (_parameters(model={"valueString": SPEC.id}, colour={"valueString": "blue"}), "", "unsupported parameter(s)"),
        (_parameters(model={"valueInteger": 3}), "", "parameter model needs one valueString"),
        (_parameters(model={"valueString": SPEC.id}), "model=other-model", "differs between the query"),
        (orjson.dumps({"resourceType": "Patient"}), "", "must be a Parameters resource"),
        (b"{not json", "", "not valid FHIR JSON"),
        (_parameters(), "", "the model parameter is required"),
    ],
)
def test_a_bad_parameters_body_is_a_400_operation_outcome(
    seam_model, alice_record, patient_user, body, query, expected
):
    alice_record.refresh_from_db()
    answer = _diagnose(_client(patient_user), alice_record.fhir_id, body, query)
    outcome = orjson.loads(answer.content)
    assert (answer.status_code, outcome["resourceType"]) == (400, "OperationOutcome")
    assert expected in outcome["issue"][0]["diagnostics"]
    assert DiagnosticJob.objects.count() == 0


def test_a_parameters_body_of_another_media_type_is_415(seam_model, alice_record, patient_user):
    alice_record.refresh_from_db()
    url = f"/fhir/Patient/{alice_record.fhir_id}/$diagnose"
    answer = _client(patient_user).post(url, data=b"model=x", content_type="text/plain")
    assert answer.status_code == 415


def test_a_clinician_without_a_grant_gets_what_an_unknown_patient_gets(seam_model, alice_record, other_clinician):
    alice_record.refresh_from_db()
    mallory = _client(other_clinician)
    body = _parameters(model={"valueString": SPEC.id})
    refused = _diagnose(mallory, alice_record.fhir_id, body)
    unknown = _diagnose(mallory, "no-such-patient", body)
    assert (refused.status_code, refused.content) == (404, unknown.content)
    assert DiagnosticJob.objects.count() == 0
