"""Patient/{id}/$everything: what the grant covers of one record, paged, each page read through the gate and logged."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from audit.models import AccessLogEntry
from records.models import Resource
from tests.api.conftest import bearer
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db


def _everything(api, token: str, patient_fhir_id: str, query: str = ""):  # type: ignore[no-untyped-def]
    return api.get(f"/fhir/Patient/{patient_fhir_id}/$everything{'?' + query if query else ''}", **bearer(token))


def _all_pages(api, token: str, patient_fhir_id: str, count: int) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    refs: list[str] = []
    offset = 0
    while True:
        bundle = orjson.loads(_everything(api, token, patient_fhir_id, f"_count={count}&_offset={offset}").content)
        page = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])]
        refs += page
        if not any(link["relation"] == "next" for link in bundle["link"]):
            return refs, bundle["total"]
        offset += count


def test_everything_pages_through_exactly_what_the_grant_covers(api, clinician, token_for, issue_grant, alice_record):
    issue_grant(resource_types=["Patient", "Condition", "Observation"])
    token = token_for(clinician)
    refs, total = _all_pages(api, token, alice_record.fhir_id, 37)
    expected = {
        f"{t}/{i}"
        for t, i in Resource.objects.filter(
            patient=alice_record, resource_type__in=["Patient", "Condition", "Observation"]
        ).values_list("resource_type", "fhir_id")
    }
    assert len(refs) == len(set(refs)) == total == len(expected)
    assert set(refs) == expected
    assert refs[0] == f"Patient/{alice_record.fhir_id}"
    # Nothing of a type the grant does not cover, though the record holds it.
    assert Resource.objects.filter(patient=alice_record, resource_type="MedicationRequest").exists()
    # Every served resource was logged as read by the clinician.
    logged = AccessLogEntry.objects.filter(actor=f"user:{clinician.pk}", action="records.search", outcome="permit")
    assert {ref.rsplit("/_history/", 1)[0] for e in logged for ref in e.resource_ids} == expected


def test_everything_takes_type_and_since(api, clinician, token_for, issue_grant, alice_record):
    issue_grant(resource_types=["Patient", "Condition", "Observation"])
    token = token_for(clinician)
    bundle = orjson.loads(_everything(api, token, alice_record.fhir_id, "_type=Condition&_count=1000").content)
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"Condition"}
    assert bundle["total"] == Resource.objects.filter(patient=alice_record, resource_type="Condition").count()
    future = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert orjson.loads(_everything(api, token, alice_record.fhir_id, f"_since={future}").content)["total"] == 0


def test_a_clinician_without_a_grant_gets_the_404_of_a_missing_patient(
    api, clinician, other_clinician, token_for, issue_grant, alice_record
):
    issue_grant(resource_types=["Observation"])
    stranger = _everything(api, token_for(other_clinician), alice_record.fhir_id)
    missing = _everything(api, token_for(other_clinician), "no-such-patient")
    assert stranger.status_code == missing.status_code == 404
    assert stranger.content == missing.content
    denied = AccessLogEntry.objects.filter(actor=f"user:{other_clinician.pk}", outcome="deny")
    assert [e.patient_ref for e in denied] == [alice_record.pk]


def test_a_revoked_grant_ends_everything_on_the_next_request(
    api, clinician, patient_user, token_for, issue_grant, alice_record
):
    grant = issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    assert _everything(api, token, alice_record.fhir_id).status_code == 200
    grant_revoke_signed(grant=grant, by=patient_user)
    assert _everything(api, token, alice_record.fhir_id).status_code == 404


def test_the_patient_reads_her_whole_record(api, patient_user, token_for, alice_record):
    refs, total = _all_pages(api, token_for(patient_user), alice_record.fhir_id, 1000)
    assert total == Resource.objects.filter(patient=alice_record).count() == len(refs)


def test_bad_everything_parameters_are_400(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    for query in ("_type=Spaceship", "_since=yesterday", "start=2020", "_count=-1"):
        response = _everything(api, token, alice_record.fhir_id, query)
        assert response.status_code == 400, query
        assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"
