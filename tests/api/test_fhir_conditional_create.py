"""If-None-Exist: a conditional create makes no duplicate; several matches are 412; no read access is 412 too."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AccessLogEntry
from records.models import Resource
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

FHIR = "application/fhir+json"
CONDITION = "code=http://loinc.org|8867-4&date=1990-02-03"


def _heart_rate(patient_id: str, value: int) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": "1990-02-03T09:30:00Z",
            "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
        }
    )


def _create(api, token: str, body: bytes, condition: str | None = CONDITION):  # type: ignore[no-untyped-def]
    headers = {"HTTP_IF_NONE_EXIST": condition} if condition is not None else {}
    return api.post("/fhir/Observation", data=body, content_type=FHIR, **headers, **bearer(token))


def _count(record) -> int:  # type: ignore[no-untyped-def]
    return Resource.objects.filter(patient=record, resource_type="Observation").count()


def test_a_conditional_create_makes_the_resource_once_and_then_answers_with_it(
    api, clinician, token_for, issue_grant, alice_record
):
    issue_grant(actions=["read", "write"])
    token = token_for(clinician)
    pid = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    before = _count(alice_record)

    first = _create(api, token, _heart_rate(pid, 61))
    second = _create(api, token, _heart_rate(pid, 62))

    assert (first.status_code, second.status_code) == (201, 200)
    assert _count(alice_record) == before + 1
    assert orjson.loads(second.content)["id"] == orjson.loads(first.content)["id"]
    assert orjson.loads(second.content)["valueQuantity"]["value"] == 61
    assert second["Location"].startswith(f"/fhir/Observation/{orjson.loads(first.content)['id']}/_history/")


def test_a_condition_matching_several_is_412_and_stores_nothing(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    pid = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    assert _create(api, token, _heart_rate(pid, 70), condition=None).status_code == 201
    assert _create(api, token, _heart_rate(pid, 71), condition=None).status_code == 201
    before = _count(alice_record)
    answer = _create(api, token, _heart_rate(pid, 72))
    assert (answer.status_code, orjson.loads(answer.content)["resourceType"]) == (412, "OperationOutcome")
    assert _count(alice_record) == before


def test_a_write_only_grantee_cannot_ask_a_condition(api, clinician, token_for, issue_grant, alice_record):
    issue_grant(actions=["write"])
    pid = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    before = _count(alice_record)
    answer = _create(api, token_for(clinician), _heart_rate(pid, 61))
    assert answer.status_code == 412
    assert _count(alice_record) == before
    denied = AccessLogEntry.objects.filter(actor=f"user:{clinician.pk}", action="records.search", outcome="deny")
    assert denied.count() == 1


def test_a_condition_with_an_unknown_parameter_is_a_400(api, patient_user, token_for, alice_record):
    pid = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    answer = _create(api, token_for(patient_user), _heart_rate(pid, 61), condition="colour=blue")
    assert answer.status_code == 400
