"""create (a clinician under a write grant; the patient for herself) and the patient's transaction import.

Every write endpoint answers oversized bodies with 413, malformed JSON with 400, a wrong
media type with 415, and FHIR that fails validation with 422, storing nothing.
"""

from __future__ import annotations

import orjson
import pytest

from audit.models import AccessLogEntry
from records.demo import generate_patient_bundle
from records.models import Resource, ResourceVersion
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

FHIR = "application/fhir+json"


def _patient_id(record) -> str:  # type: ignore[no-untyped-def]
    return Resource.objects.get(patient=record, resource_type="Patient").fhir_id


def _heart_rate(patient_id: str, value: int = 72) -> dict:  # type: ignore[type-arg]
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2025-07-01T09:30:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def test_a_clinician_with_a_write_grant_creates_an_observation_logged_with_the_grant(
    api, clinician, token_for, issue_grant, alice_record
):
    grant = issue_grant(actions=["read", "write"])
    token = token_for(clinician)
    before = Resource.objects.filter(patient=alice_record).count()

    response = api.post(
        "/fhir/Observation", orjson.dumps(_heart_rate(_patient_id(alice_record))), content_type=FHIR, **bearer(token)
    )

    assert response.status_code == 201
    created = orjson.loads(response.content)
    assert created["meta"]["versionId"] == "1"
    assert response["Location"] == f"http://testserver/fhir/Observation/{created['id']}/_history/1"
    assert response["ETag"] == 'W/"1"'
    assert Resource.objects.filter(patient=alice_record).count() == before + 1
    read = api.get(f"/fhir/Observation/{created['id']}", **bearer(token))
    assert read.content == response.content  # the representation is the stored bytes
    # One write, one entry: the store's own, carrying the decision's purpose and grant.
    entry = AccessLogEntry.objects.get(action="records.write", actor=f"user:{clinician.pk}")
    assert entry.grant_ref == grant.id
    assert (entry.outcome, entry.purpose, entry.resource_ids) == (
        "permit",
        "TREAT",
        [f"Observation/{created['id']}/_history/1"],
    )


def test_a_clinician_with_a_read_only_grant_cannot_create_and_learns_nothing(
    api, clinician, token_for, issue_grant, alice_record
):
    issue_grant()
    token = token_for(clinician)
    before = ResourceVersion.objects.count()

    denied = api.post(
        "/fhir/Observation", orjson.dumps(_heart_rate(_patient_id(alice_record))), content_type=FHIR, **bearer(token)
    )
    nobody = api.post(
        "/fhir/Observation", orjson.dumps(_heart_rate("no-such-patient")), content_type=FHIR, **bearer(token)
    )

    assert denied.status_code == nobody.status_code == 404
    assert denied.content == nobody.content
    assert ResourceVersion.objects.count() == before
    assert AccessLogEntry.objects.get(action="records.write", outcome="deny").grant_ref == ""


def test_create_needs_the_c_scope(api, clinician, token_for, issue_grant, alice_record):
    issue_grant(actions=["read", "write"])
    response = api.post(
        "/fhir/Observation",
        orjson.dumps(_heart_rate(_patient_id(alice_record))),
        content_type=FHIR,
        **bearer(token_for(clinician, scope="user/Observation.rs")),
    )

    assert response.status_code == 403


def test_the_patient_creates_in_her_own_record_without_naming_herself_and_prefer_minimal_has_no_body(
    api, patient_user, token_for, alice_record
):
    body = _heart_rate("x")
    del body["subject"]
    response = api.post(
        "/fhir/Observation", orjson.dumps(body), content_type="application/json", HTTP_PREFER="return=minimal",
        **bearer(token_for(patient_user)),
    )  # fmt: skip

    assert response.status_code == 201
    assert response.content == b""
    new_id = response["Location"].split("/")[-3]
    assert Resource.objects.get(fhir_id=new_id).patient_id == alice_record.pk


def test_invalid_fhir_is_422_with_every_problem_and_nothing_is_stored(api, patient_user, token_for, alice_record):
    body = _heart_rate(_patient_id(alice_record))
    body["status"] = "sort-of-final"
    body["valueQuantity"]["value"] = "seventy"
    before = ResourceVersion.objects.count()

    response = api.post("/fhir/Observation", orjson.dumps(body), content_type=FHIR, **bearer(token_for(patient_user)))

    assert response.status_code == 422
    outcome = orjson.loads(response.content)
    assert outcome["resourceType"] == "OperationOutcome"
    assert len(outcome["issue"]) >= 2
    assert ResourceVersion.objects.count() == before


@pytest.mark.parametrize("url", ["/fhir/Observation", "/fhir"])
def test_every_write_endpoint_answers_malformed_oversized_and_wrongly_typed_bodies(
    api, settings, patient_user, token_for, alice_record, url
):
    token = token_for(patient_user)
    before = ResourceVersion.objects.count()
    settings.FHIR_MAX_DOCUMENT_BYTES = 4096

    malformed = api.post(url, b'{"resourceType": "Observation", ', content_type=FHIR, **bearer(token))
    not_object = api.post(url, b"[1, 2]", content_type=FHIR, **bearer(token))
    oversized = api.post(
        url, b'{"resourceType":"Basic","x":"' + b"a" * 5000 + b'"}', content_type=FHIR, **bearer(token)
    )
    form = api.post(url, "a=1", content_type="application/x-www-form-urlencoded", **bearer(token))
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    too_big_for_django = api.post(url, b"{" + b" " * 3000 + b"}", content_type=FHIR, **bearer(token))

    assert (malformed.status_code, not_object.status_code, oversized.status_code) == (400, 400, 413)
    assert (form.status_code, too_big_for_django.status_code) == (415, 413)
    for response in (malformed, not_object, oversized, form, too_big_for_django):
        assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"
    assert ResourceVersion.objects.count() == before


def test_the_patient_imports_a_transaction_bundle_into_her_own_record(api, patient_user, token_for, patient):
    bundle = generate_patient_bundle(11, years=1)

    response = api.post("/fhir", orjson.dumps(bundle), content_type=FHIR, **bearer(token_for(patient_user)))

    assert response.status_code == 200
    result = orjson.loads(response.content)
    assert result["type"] == "transaction-response"
    assert len(result["entry"]) == len(bundle["entry"])
    assert {e["response"]["status"] for e in result["entry"]} == {"201 Created"}
    assert Resource.objects.filter(patient=patient).count() == len(bundle["entry"])
    again = orjson.loads(
        api.post("/fhir/", orjson.dumps(bundle), content_type=FHIR, **bearer(token_for(patient_user))).content
    )
    assert {e["response"]["status"] for e in again["entry"]} == {"200 OK"}


def test_a_transaction_with_an_invalid_entry_is_422_and_stores_nothing(api, patient_user, token_for, patient):
    bundle = generate_patient_bundle(11, years=1)
    bundle["entry"][3]["resource"]["status"] = "not-a-status"

    response = api.post("/fhir", orjson.dumps(bundle), content_type=FHIR, **bearer(token_for(patient_user)))

    assert response.status_code == 422
    assert any("entry[3]" in str(i.get("expression")) for i in orjson.loads(response.content)["issue"])
    assert not Resource.objects.filter(patient=patient).exists()


def test_a_clinician_cannot_post_a_transaction(api, clinician, token_for, patient):
    bundle = generate_patient_bundle(11, years=1)

    response = api.post("/fhir", orjson.dumps(bundle), content_type=FHIR, **bearer(token_for(clinician)))

    assert response.status_code == 403
    assert not Resource.objects.filter(patient=patient).exists()


def _with_decimals(patient_id: str) -> bytes:
    # Written by hand: serializing a dict would already have turned 1.50 into 1.5.
    body = orjson.dumps(_heart_rate(patient_id)).decode()
    body = body.replace('"value":72', '"value":1.50').replace(
        '"effectiveDateTime"', '"referenceRange":[{"low":{"value":0.010},"high":{"value":2.50E+1}}],"effectiveDateTime"'
    )
    return body.encode()


def test_a_created_resource_keeps_its_decimals_digit_for_digit(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)

    created = api.post(
        "/fhir/Observation", _with_decimals(_patient_id(alice_record)), content_type=FHIR, **bearer(token)
    )
    assert created.status_code == 201
    read = api.get(created["Location"].rsplit("/_history/", 1)[0], **bearer(token))

    assert read.status_code == 200
    for digits in (b'"value":1.50', b'"value":0.010', b'"value":2.50E+1'):
        assert digits in created.content
        assert digits in read.content


def test_a_transaction_keeps_its_entries_decimals(api, patient_user, token_for, patient):
    token = token_for(patient_user)
    bundle = generate_patient_bundle(11, years=1)
    observation = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    observation["resource"]["valueQuantity"] = {"value": 421337, "unit": "mg"}
    payload = orjson.dumps(bundle).replace(b'"value":421337', b'"value":98.60')

    response = api.post("/fhir", payload, content_type=FHIR, **bearer(token))

    assert response.status_code == 200
    found = api.get("/fhir/Observation?_count=1000", **bearer(token))
    assert found.status_code == 200
    assert found.content.count(b'"value":98.60') == 1  # served as stored, digit for digit


@pytest.mark.parametrize("url", ["/fhir/Observation", "/fhir"])
def test_a_property_named_twice_is_400_and_nothing_is_stored(api, patient_user, token_for, alice_record, url):
    token = token_for(patient_user)
    body = orjson.dumps(_heart_rate(_patient_id(alice_record))).replace(
        b'"status":"final"', b'"status":"final","status":"final"'
    )
    if url == "/fhir":
        body = (
            b'{"resourceType":"Bundle","type":"transaction","entry":[{"resource":'
            + body
            + b',"request":{"method":"POST","url":"Observation"}}]}'
        )
    before = ResourceVersion.objects.count()

    response = api.post(url, body, content_type=FHIR, **bearer(token))

    assert response.status_code == 400
    outcome = orjson.loads(response.content)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "status" in outcome["issue"][0]["diagnostics"]
    assert ResourceVersion.objects.count() == before


@pytest.mark.parametrize("depth", [40, 1000, 2000])
@pytest.mark.parametrize("url", ["/fhir/Observation", "/fhir"])
def test_a_deeply_nested_body_is_a_client_error_never_a_server_error(api, patient_user, token_for, patient, url, depth):
    body = b'{"resourceType":"Observation","extension":' + b"[" * depth + b"]" * depth + b"}"

    response = api.post(url, body, content_type=FHIR, **bearer(token_for(patient_user)))

    assert response.status_code in (400, 422)
    assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"
    assert not ResourceVersion.objects.exists()
