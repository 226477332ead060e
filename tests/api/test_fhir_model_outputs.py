"""A run-model grant lets its grantee read what the jobs they ran released, and nothing else of those types."""

from __future__ import annotations

import secrets
from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AccessLogEntry
from diagnostics.models import DiagnosticJob
from diagnostics.services import diagnostic_job_execute
from tests.diagnostics.jobs_support import *  # noqa: F403
from tests.diagnostics.jobs_support import SPEC
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db


def _client(user, scope: str = "user/*.cruds") -> Client:  # type: ignore[no-untyped-def]
    from oauth2_provider.models import AccessToken

    token = secrets.token_urlsafe(32)
    AccessToken.objects.create(user=user, token=token, expires=timezone.now() + timedelta(hours=1), scope=scope)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _run(client: Client, patient_fhir_id: str) -> list[str]:
    answer = client.post(f"/fhir/Patient/{patient_fhir_id}/$diagnose?model={SPEC.id}")
    assert answer.status_code == 202
    job = DiagnosticJob.objects.get(pk=orjson.loads(answer.content)["id"])
    diagnostic_job_execute(job_id=str(job.id))
    task = orjson.loads(client.get(f"/fhir/Task/{job.id}").content)
    return [output["valueReference"]["reference"] for output in task["output"]]


def test_the_clinician_who_ran_a_model_reads_its_risk_assessment_and_provenance(
    seam_model, run_model_grant, alice_record, clinician
):
    grant = run_model_grant()
    alice_record.refresh_from_db()
    carol = _client(clinician)
    risk, provenance = _run(carol, alice_record.fhir_id)

    for reference in (risk, provenance):
        answer = carol.get(f"/fhir/{reference}")
        assert answer.status_code == 200
        assert orjson.loads(answer.content)["id"] == reference.split("/")[1]
    logged = AccessLogEntry.objects.filter(action="records.read", actor=f"user:{clinician.pk}")
    assert [(e.resource_ids, e.grant_ref, e.outcome) for e in logged.order_by("id")] == [
        ([f"{risk}/_history/1"], grant.pk, "permit"),
        ([f"{provenance}/_history/1"], grant.pk, "permit"),
    ]
    found = orjson.loads(carol.get(f"/fhir/RiskAssessment?patient={alice_record.fhir_id}").content)
    assert [entry["resource"]["id"] for entry in found["entry"]] == [risk.split("/")[1]]


def test_another_clinician_with_his_own_run_model_grant_cannot_read_her_outputs(
    seam_model, run_model_grant, alice_record, clinician, other_clinician
):
    run_model_grant()
    run_model_grant(grantee=other_clinician)
    alice_record.refresh_from_db()
    risk, provenance = _run(_client(clinician), alice_record.fhir_id)
    dave = _client(other_clinician)
    missing = dave.get("/fhir/RiskAssessment/no-such-id")

    for reference in (risk, provenance):
        answer = dave.get(f"/fhir/{reference}")
        assert (answer.status_code, answer.content) == (404, missing.content)
    found = orjson.loads(dave.get(f"/fhir/RiskAssessment?patient={alice_record.fhir_id}").content)
    assert (found["total"], "entry" in found) == (0, False)

    own_risk, _ = _run(dave, alice_record.fhir_id)
    found = orjson.loads(dave.get(f"/fhir/RiskAssessment?patient={alice_record.fhir_id}").content)
    assert [entry["resource"]["id"] for entry in found["entry"]] == [own_risk.split("/")[1]]


def test_a_run_model_grant_does_not_open_outputs_of_the_patients_own_jobs(
    seam_model, run_model_grant, alice_record, clinician, patient_user
):
    run_model_grant()
    alice_record.refresh_from_db()
    alices_risk, _ = _run(_client(patient_user), alice_record.fhir_id)
    assert _client(clinician).get(f"/fhir/{alices_risk}").status_code == 404
    assert _client(patient_user).get(f"/fhir/{alices_risk}").status_code == 200


def test_the_outputs_are_closed_once_the_run_model_grant_is_revoked(
    seam_model, run_model_grant, alice_record, clinician, patient_user
):

    grant = run_model_grant()
    alice_record.refresh_from_db()
    carol = _client(clinician)
    risk, _ = _run(carol, alice_record.fhir_id)
    grant_revoke_signed(grant=grant, by=patient_user)
    assert carol.get(f"/fhir/{risk}").status_code == 404


def test_revinclude_brings_the_provenance_of_her_own_risk_assessment(
    seam_model, run_model_grant, alice_record, clinician
):
    run_model_grant()
    alice_record.refresh_from_db()
    carol = _client(clinician)
    risk, provenance = _run(carol, alice_record.fhir_id)

    answer = carol.get(f"/fhir/RiskAssessment?patient={alice_record.fhir_id}&_revinclude=Provenance:target")

    bundle = orjson.loads(answer.content)
    modes = [(e["search"]["mode"], f"{e['resource']['resourceType']}/{e['resource']['id']}") for e in bundle["entry"]]
    assert modes == [("match", risk), ("include", provenance)]
