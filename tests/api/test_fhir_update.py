"""PUT update with If-Match: the owner and a write grantee make new versions; a stale version is 412."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AccessLogEntry
from records.models import Resource
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

FHIR = "application/fhir+json"


def _observation(patient_id: str, value: int, resource_id: str | None = None) -> dict:  # type: ignore[type-arg]
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2025-07-01T09:30:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    return {**resource, "id": resource_id} if resource_id else resource


def _put(api, token: str, resource: dict, if_match: str | None = None):  # type: ignore[no-untyped-def,type-arg]
    headers = {"HTTP_IF_MATCH": if_match} if if_match else {}
    url = f"/fhir/Observation/{resource['id']}"
    return api.put(url, data=orjson.dumps(resource), content_type=FHIR, **headers, **bearer(token))


def _created(api, token: str, patient_id: str) -> str:  # type: ignore[no-untyped-def]
    answer = api.post(
        "/fhir/Observation", data=orjson.dumps(_observation(patient_id, 60)), content_type=FHIR, **bearer(token)
    )
    assert answer.status_code == 201
    return str(orjson.loads(answer.content)["id"])


def test_the_owner_updates_with_if_match_and_a_stale_version_is_412(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    pid = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    rid = _created(api, token, pid)

    updated = _put(api, token, _observation(pid, 65, rid), if_match='W/"1"')
    stale = _put(api, token, _observation(pid, 70, rid), if_match='W/"1"')

    assert (updated.status_code, updated["ETag"]) == (200, 'W/"2"')
    assert orjson.loads(updated.content)["meta"]["versionId"] == "2"
    assert (stale.status_code, orjson.loads(stale.content)["resourceType"]) == (412, "OperationOutcome")
    current = orjson.loads(api.get(f"/fhir/Observation/{rid}", **bearer(token)).content)
    assert (current["meta"]["versionId"], current["valueQuantity"]["value"]) == ("2", 65)
    assert _put(api, token, _observation(pid, 75, rid)).status_code == 200


def test_a_write_grantee_updates_and_a_reader_gets_the_404_of_a_missing_resource(
    api, patient_user, clinician, other_clinician, token_for, issue_grant, alice_record
):
    pid = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    rid = _created(api, token_for(patient_user), pid)
    issue_grant(actions=["read", "write"])
    issue_grant(grantee=other_clinician, actions=["read"])

    assert _put(api, token_for(clinician), _observation(pid, 66, rid), if_match='W/"1"').status_code == 200
    reader = _put(api, token_for(other_clinician), _observation(pid, 67, rid), if_match='W/"1"')
    missing = _put(api, token_for(other_clinician), _observation(pid, 67, "no-such-id"))
    assert (reader.status_code, reader.content) == (404, missing.content)
    denied = AccessLogEntry.objects.filter(actor=f"user:{other_clinician.pk}", action="records.write", outcome="deny")
    assert denied.count() == 1


def test_an_update_whose_body_names_another_id_is_a_400(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    pid = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    rid = _created(api, token, pid)
    answer = api.put(
        f"/fhir/Observation/{rid}",
        data=orjson.dumps(_observation(pid, 61, "other")),
        content_type=FHIR,
        **bearer(token),
    )
    assert answer.status_code == 400
