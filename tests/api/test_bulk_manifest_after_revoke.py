"""A completed export's manifest is decided again when served: it lists and counts only what a download serves."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from api import bulk_export
from api.fhir.bulk import group_id
from audit.models import AccessLogEntry
from consent.models import Grant
from records.demo import generate_patient_bundle
from records.models import Patient, Resource
from records.services import fhir_ingest
from tests.api.conftest import bearer
from tests.api.test_fhir_bulk_export import _kickoff, _ndjson, _run
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db


@pytest.fixture
def held(monkeypatch):  # type: ignore[no-untyped-def]
    """The broker seam held: the test runs the export's chunks itself."""
    monkeypatch.setattr(bulk_export.lifecycle, "export_publish", lambda *, job_id: True)


def _count(patient: Patient, resource_type: str) -> int:
    return Resource.objects.filter(patient=patient, resource_type=resource_type).count()


def _manifest(api: Client, token: str, status_url: str) -> dict[str, dict]:  # type: ignore[type-arg]
    response = api.get(status_url, **bearer(token))
    assert response.status_code == 200
    return {o["type"]: o for o in orjson.loads(response.content)["output"]}


def _export_of_two(api, clinician, token_for, issue_grant, other_patient):  # type: ignore[no-untyped-def]
    """Alice shares Observations and Conditions, Bob Observations only: Conditions come from Alice alone."""
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(11, years=1)), actor="system:test", patient=other_patient)
    alice_grant = issue_grant(resource_types=["Observation", "Condition"])
    issue_grant(patient=other_patient, by=other_patient.user, resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, f"/fhir/Group/{group_id(clinician)}/$export?_type=Observation,Condition")
    _run(status_url)
    return alice_grant, token, status_url


def test_a_revoked_patient_is_not_counted_and_a_type_only_she_had_is_not_listed(
    api, clinician, patient_user, token_for, issue_grant, alice_record, other_patient, held
):
    alice_grant, token, status_url = _export_of_two(api, clinician, token_for, issue_grant, other_patient)
    before = _manifest(api, token, status_url)
    assert {t: o["count"] for t, o in before.items()} == {
        "Condition": _count(alice_record, "Condition"),
        "Observation": _count(alice_record, "Observation") + _count(other_patient, "Observation"),
    }
    assert _count(alice_record, "Condition") > 0

    grant_revoke_signed(grant=alice_grant, by=patient_user)
    after = _manifest(api, token, status_url)

    assert list(after) == ["Observation"]
    assert after["Observation"]["count"] == _count(other_patient, "Observation")
    lines = _ndjson(api, token, after["Observation"]["url"])
    assert len(lines) == after["Observation"]["count"]
    assert {line["subject"]["reference"] for line in lines} == {f"Patient/{other_patient.fhir_id}"}
    # The file the manifest no longer lists serves nothing now.
    assert _ndjson(api, token, before["Condition"]["url"]) == []


def test_an_expired_grant_is_not_counted_either(
    api, clinician, token_for, issue_grant, alice_record, other_patient, held
):
    alice_grant, token, status_url = _export_of_two(api, clinician, token_for, issue_grant, other_patient)
    # Her grant's end passes between the export and the next poll.
    Grant.objects.filter(pk=alice_grant.pk).update(not_after=timezone.now() - timedelta(seconds=1))

    after = _manifest(api, token, status_url)

    assert {t: o["count"] for t, o in after.items()} == {"Observation": _count(other_patient, "Observation")}
    assert len(_ndjson(api, token, after["Observation"]["url"])) == after["Observation"]["count"]


def test_a_grant_no_longer_covering_a_type_drops_only_that_type(
    api, clinician, patient_user, token_for, issue_grant, alice_record, other_patient, held
):
    alice_grant, token, status_url = _export_of_two(api, clinician, token_for, issue_grant, other_patient)
    # She narrows her sharing to Conditions: a new grant, the broad one revoked.
    issue_grant(resource_types=["Condition"])
    grant_revoke_signed(grant=alice_grant, by=patient_user)

    after = _manifest(api, token, status_url)

    assert {t: o["count"] for t, o in after.items()} == {
        "Condition": _count(alice_record, "Condition"),
        "Observation": _count(other_patient, "Observation"),
    }
    for output in after.values():
        assert len(_ndjson(api, token, output["url"])) == output["count"]


def test_serving_the_manifest_writes_no_access_log_entry(
    api, clinician, patient_user, token_for, issue_grant, alice_record, other_patient, held
):
    alice_grant, token, status_url = _export_of_two(api, clinician, token_for, issue_grant, other_patient)
    grant_revoke_signed(grant=alice_grant, by=patient_user)
    logged = AccessLogEntry.objects.count()

    _manifest(api, token, status_url)

    # Deciding opens nothing: only a download, which serves lines, logs its decision.
    assert AccessLogEntry.objects.count() == logged
