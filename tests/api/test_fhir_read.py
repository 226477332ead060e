"""read and vread: the gate decides, the stored bytes are served, and a deny is byte-identical to a miss."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AccessLogEntry
from records.models import Resource, ResourceVersion
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def _url(resource: Resource, version: int | None = None) -> str:
    tail = f"/_history/{version}" if version is not None else ""
    return f"/fhir/{resource.resource_type}/{resource.fhir_id}{tail}"


def test_the_granted_clinician_reads_the_stored_bytes_with_etag_and_last_modified(
    api, clinician, token_for, issue_grant, an_observation
):
    grant = issue_grant()
    response = api.get(_url(an_observation), **bearer(token_for(clinician)))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json; charset=utf-8"
    assert response["ETag"] == 'W/"1"'
    assert response["Last-Modified"]
    body = orjson.loads(response.content)
    assert (body["resourceType"], body["id"], body["meta"]["versionId"]) == ("Observation", an_observation.fhir_id, "1")
    entry = AccessLogEntry.objects.get(action="records.read")
    assert (entry.outcome, entry.actor, entry.purpose, entry.grant_ref) == (
        "permit",
        f"user:{clinician.pk}",
        "TREAT",
        grant.id,
    )


def test_the_patient_reads_her_own_resource_for_herself(api, patient_user, token_for, an_observation):
    response = api.get(_url(an_observation), **bearer(token_for(patient_user)))

    assert response.status_code == 200
    assert AccessLogEntry.objects.get(action="records.read").purpose == "PATRQT"


def test_vread_serves_the_asked_version(api, patient_user, token_for, an_observation):
    response = api.get(_url(an_observation, 1), **bearer(token_for(patient_user)))

    assert response.status_code == 200
    assert orjson.loads(response.content)["meta"]["versionId"] == "1"
    assert response["ETag"] == 'W/"1"'


@pytest.mark.parametrize("persona", ["other_clinician", "researcher", "steward", "other_patient", "clinician"])
def test_a_persona_without_access_gets_exactly_what_a_stranger_gets_for_a_missing_resource(
    request, api, persona, token_for, an_observation
):
    who = request.getfixturevalue(persona)
    user = who.user if persona == "other_patient" else who
    headers = bearer(token_for(user))

    denied = api.get(_url(an_observation), **headers)
    missing = api.get(f"/fhir/Observation/{'0' * 36}", **headers)
    denied_version = api.get(_url(an_observation, 1), **headers)
    missing_version = api.get(_url(an_observation, 7), **headers)

    assert denied.status_code == missing.status_code == denied_version.status_code == missing_version.status_code == 404
    assert denied.content == missing.content == denied_version.content == missing_version.content
    assert dict(denied.items()).keys() == dict(missing.items()).keys()
    assert orjson.loads(denied.content) == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-found", "diagnostics": "resource not found"}],
    }
    assert AccessLogEntry.objects.filter(action="records.read", outcome="deny").count() == 2


def test_without_a_token_the_answer_is_401_with_a_bearer_challenge(api, an_observation):
    response = api.get(_url(an_observation))

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="HealthLedger FHIR"'
    assert orjson.loads(response.content)["issue"][0]["code"] == "login"
    assert not AccessLogEntry.objects.filter(action="records.read").exists()


def test_an_unknown_token_is_401_invalid_token(api, an_observation):
    response = api.get(_url(an_observation), **bearer("not-a-token"))

    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_a_token_whose_scopes_do_not_cover_the_type_is_403_before_anything_is_looked_at(
    api, clinician, token_for, issue_grant, an_observation
):
    issue_grant()
    headers = bearer(token_for(clinician, scope="user/Condition.rs"))

    existing = api.get(_url(an_observation), **headers)
    missing = api.get(f"/fhir/Observation/{'0' * 36}", **headers)

    assert existing.status_code == missing.status_code == 403
    assert existing.content == missing.content
    assert not AccessLogEntry.objects.filter(action="records.read").exists()


def test_format_json_is_served_and_xml_is_406(api, patient_user, token_for, an_observation):
    headers = bearer(token_for(patient_user))

    assert api.get(_url(an_observation) + "?_format=json", **headers).status_code == 200
    assert api.get(_url(an_observation) + "?_format=application/fhir%2Bjson", **headers).status_code == 200
    xml = api.get(_url(an_observation) + "?_format=xml", **headers)
    assert xml.status_code == 406
    assert orjson.loads(xml.content)["resourceType"] == "OperationOutcome"
    assert api.get(_url(an_observation), HTTP_ACCEPT="application/fhir+xml", **headers).status_code == 406


def test_other_methods_on_a_resource_are_405_with_allow(api, patient_user, token_for, an_observation):
    response = api.delete(_url(an_observation), **bearer(token_for(patient_user)))

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"


def test_an_updated_resource_has_a_newer_etag_and_vread_still_serves_the_old_version(
    api, patient, patient_user, token_for, an_observation
):
    from records.services import fhir_ingest

    headers = bearer(token_for(patient_user))
    current = orjson.loads(api.get(_url(an_observation), **headers).content)
    current["status"] = "amended"
    update = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": current, "request": {"method": "PUT", "url": f"Observation/{an_observation.fhir_id}"}}],
    }
    fhir_ingest(payload=orjson.dumps(update), actor="system:test", patient=patient)

    latest = api.get(_url(an_observation), **headers)
    first = api.get(_url(an_observation, 1), **headers)

    assert latest["ETag"] == 'W/"2"'
    assert orjson.loads(latest.content)["status"] == "amended"
    assert orjson.loads(first.content)["status"] == "final"
    assert ResourceVersion.objects.filter(resource=an_observation).count() == 2
