"""PATCH with a JSON Patch: the owner and write grantees make a new version, validated; If-Match and a bad patch
or an invalid result change nothing; a reader and a stranger get the 404 of a missing resource."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AccessLogEntry
from records.fhir.json_patch import PatchError, patch_apply
from records.models import Resource, ResourceVersion
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

FHIR = "application/fhir+json"
PATCH = "application/json-patch+json"


def _observation(patient_id: str, value: float) -> dict:  # type: ignore[type-arg]
    return {
        "resourceType": "Observation",
        "status": "preliminary",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2025-07-01T09:30:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


@pytest.fixture
def heart_rate(api, patient_user, token_for, alice_record) -> str:  # type: ignore[no-untyped-def]
    pid = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    answer = api.post(
        "/fhir/Observation",
        data=orjson.dumps(_observation(pid, 60.50)),
        content_type=FHIR,
        **bearer(token_for(patient_user)),
    )
    assert answer.status_code == 201
    return str(orjson.loads(answer.content)["id"])


def _patch(api, token: str, rid: str, operations: object, **headers: str):  # type: ignore[no-untyped-def]
    body = operations if isinstance(operations, bytes) else orjson.dumps(operations)
    content_type = headers.pop("content_type", PATCH)
    return api.patch(f"/fhir/Observation/{rid}", data=body, content_type=content_type, **headers, **bearer(token))


def _current(rid: str) -> int:
    return Resource.objects.get(fhir_id=rid).current_version


FINAL = [
    {"op": "test", "path": "/status", "value": "preliminary"},
    {"op": "replace", "path": "/status", "value": "final"},
    {"op": "add", "path": "/note", "value": [{"text": "rechecked"}]},
]


def test_the_owner_patches_with_if_match_and_gets_the_new_version(api, patient_user, token_for, heart_rate):
    token = token_for(patient_user)
    answer = _patch(api, token, heart_rate, FINAL, HTTP_IF_MATCH='W/"1"')

    assert (answer.status_code, answer["ETag"]) == (200, 'W/"2"')
    body = orjson.loads(answer.content)
    assert (body["status"], body["note"], body["meta"]["versionId"]) == ("final", [{"text": "rechecked"}], "2")
    stored = api.get(f"/fhir/Observation/{heart_rate}", **bearer(token))
    current = orjson.loads(stored.content)
    assert (current["status"], current["note"]) == ("final", [{"text": "rechecked"}])
    assert current["valueQuantity"] == _observation("x", 60.5)["valueQuantity"]
    assert _current(heart_rate) == 2


def test_a_stale_if_match_is_412_and_nothing_is_written(api, patient_user, token_for, heart_rate):
    token = token_for(patient_user)
    assert _patch(api, token, heart_rate, FINAL, HTTP_IF_MATCH='W/"1"').status_code == 200
    stale = _patch(
        api, token, heart_rate, [{"op": "replace", "path": "/status", "value": "amended"}], HTTP_IF_MATCH='W/"1"'
    )

    assert (stale.status_code, orjson.loads(stale.content)["resourceType"]) == (412, "OperationOutcome")
    assert _current(heart_rate) == 2
    assert ResourceVersion.objects.filter(resource__fhir_id=heart_rate).count() == 2


@pytest.mark.parametrize(
    ("operations", "status", "says"),
    [
        (b"not json", 400, "not valid JSON"),
        ({"op": "replace"}, 400, "array of operations"),
        ([{"op": "frobnicate", "path": "/status"}], 400, "op must be one of"),
        ([{"op": "replace", "path": "/nothing/here", "value": 1}], 400, "no member"),
        ([{"op": "test", "path": "/status", "value": "preliminary"}], 400, "test failed at /status"),
        ([{"op": "remove", "path": "/code/coding/7"}], 400, "no element"),
        ([{"op": "replace", "path": "/id", "value": "other"}], 400, "must stay the Observation"),
        ([{"op": "replace", "path": "/status", "value": "no-such-status"}], 422, "status"),
        ([{"op": "remove", "path": "/code"}], 422, "code"),
    ],
)
def test_a_bad_patch_or_an_invalid_result_is_an_operation_outcome_and_changes_nothing(
    api, patient_user, token_for, heart_rate, operations, status, says
):
    # A later operation failing undoes the earlier ones: the patch applies whole or not at all.
    first = [{"op": "replace", "path": "/status", "value": "final"}]
    if isinstance(operations, list):
        operations = first + operations
    answer = _patch(api, token_for(patient_user), heart_rate, operations)
    body = orjson.loads(answer.content)
    assert (answer.status_code, body["resourceType"]) == (status, "OperationOutcome")
    assert says in orjson.dumps(body).decode()
    assert _current(heart_rate) == 1


def test_a_patch_in_another_media_type_is_415(api, patient_user, token_for, heart_rate):
    answer = _patch(api, token_for(patient_user), heart_rate, FINAL, content_type=FHIR)
    assert (answer.status_code, orjson.loads(answer.content)["resourceType"]) == (415, "OperationOutcome")


def test_a_write_grantee_patches_a_reader_and_a_stranger_get_the_404_of_a_missing_resource(
    api, clinician, other_clinician, researcher, token_for, issue_grant, heart_rate
):
    issue_grant(actions=["read", "write"])
    issue_grant(grantee=other_clinician, actions=["read"])

    assert _patch(api, token_for(clinician), heart_rate, FINAL, HTTP_IF_MATCH='W/"1"').status_code == 200
    again = [{"op": "replace", "path": "/status", "value": "amended"}]
    reader = _patch(api, token_for(other_clinician), heart_rate, again, HTTP_IF_MATCH='W/"1"')
    missing = _patch(api, token_for(other_clinician), "no-such-id", again)
    stranger = _patch(api, token_for(researcher), heart_rate, again)
    assert (reader.status_code, reader.content) == (404, missing.content)
    assert (stranger.status_code, stranger.content) == (404, missing.content)
    assert _current(heart_rate) == 2
    denied = AccessLogEntry.objects.filter(actor=f"user:{other_clinician.pk}", action="records.write", outcome="deny")
    assert denied.count() == 1
    # Refused before anything was read: no read of the resource by the reader is in the log.
    assert not AccessLogEntry.objects.filter(actor=f"user:{other_clinician.pk}", action="records.read").exists()


def test_json_patch_follows_rfc_6902():
    document = {"a": {"b": [1, 2, 3]}, "c~d": 1, "e/f": 2}
    patched = patch_apply(
        document,
        [
            {"op": "add", "path": "/a/b/1", "value": 9},
            {"op": "add", "path": "/a/b/-", "value": 4},
            {"op": "remove", "path": "/c~0d"},
            {"op": "move", "from": "/e~1f", "path": "/g"},
            {"op": "copy", "from": "/a/b", "path": "/h"},
            {"op": "test", "path": "/g", "value": 2.0},
            {"op": "replace", "path": "/a/b/0", "value": {"x": True}},
        ],
    )
    assert patched == {"a": {"b": [{"x": True}, 9, 2, 3, 4]}, "g": 2, "h": [1, 9, 2, 3, 4]}
    assert document == {"a": {"b": [1, 2, 3]}, "c~d": 1, "e/f": 2}
    with pytest.raises(PatchError, match="test failed"):
        patch_apply({"a": 1}, [{"op": "test", "path": "/a", "value": True}])
    with pytest.raises(PatchError, match="into itself"):
        patch_apply({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/c"}])
    with pytest.raises(PatchError, match="not an index"):
        patch_apply({"a": [1]}, [{"op": "add", "path": "/a/01", "value": 2}])
