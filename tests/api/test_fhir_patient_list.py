"""`Patient?` naming no one patient is a clinician's patient list: only records a live grant covers, each read gated."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AccessLogEntry
from records.models import Resource
from tests.api.conftest import bearer
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db


def _bundle(api, token: str, query: str = "") -> dict:  # type: ignore[no-untyped-def,type-arg]
    response = api.get(f"/fhir/Patient{'?' + query if query else ''}", **bearer(token))
    assert response.status_code == 200
    return orjson.loads(response.content)


def _ids(bundle: dict) -> list[str]:  # type: ignore[type-arg]
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def test_a_clinician_lists_the_patients_she_holds_a_live_grant_for_and_no_one_else(
    api, clinician, other_clinician, token_for, issue_grant, alice_record, other_patient
):
    issue_grant(resource_types=["Patient"])
    alice = Resource.objects.get(patient=alice_record, resource_type="Patient")

    listed = _bundle(api, token_for(clinician))

    assert (_ids(listed), listed["total"]) == ([alice.fhir_id], 1)
    searched = AccessLogEntry.objects.filter(action="records.search", actor=f"user:{clinician.pk}", outcome="permit")
    assert {e.patient_ref for e in searched} == {alice_record.pk}
    stranger = _bundle(api, token_for(other_clinician))
    assert (_ids(stranger), stranger["total"]) == ([], 0)
    assert not AccessLogEntry.objects.filter(actor=f"user:{other_clinician.pk}").exists()


def test_the_patient_list_takes_the_patient_search_parameters(api, clinician, token_for, issue_grant, alice_record):
    issue_grant(resource_types=["Patient"])
    token = token_for(clinician)
    alice = orjson.loads(
        api.get(
            f"/fhir/Patient/{Resource.objects.get(patient=alice_record, resource_type='Patient').fhir_id}",
            **bearer(token),
        ).content
    )
    family = alice["name"][0]["family"]
    assert _ids(_bundle(api, token, f"family={family[:3]}")) == [alice["id"]]
    assert _bundle(api, token, f"family={family}xyz")["total"] == 0
    assert _bundle(api, token, "_summary=count")["total"] == 1


def test_a_grant_that_does_not_cover_patient_lists_nothing(api, clinician, token_for, issue_grant, alice_record):
    issue_grant(resource_types=["Observation"])
    assert _bundle(api, token_for(clinician))["total"] == 0


def test_a_revoked_grant_takes_the_patient_off_the_list(
    api, clinician, patient_user, token_for, issue_grant, alice_record
):

    grant = issue_grant(resource_types=["Patient"])
    token = token_for(clinician)
    assert _bundle(api, token)["total"] == 1
    grant_revoke_signed(grant=grant, by=patient_user)
    assert _bundle(api, token)["total"] == 0
