"""An unmodified FHIR client library from PyPI (fhirpy's SyncFHIRClient) against a live server over HTTP."""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from audit.models import AccessLogEntry
from records.models import Resource

pytestmark = pytest.mark.django_db(transaction=True)


def _client(live_server, token: str) -> SyncFHIRClient:  # type: ignore[no-untyped-def]
    return SyncFHIRClient(f"{live_server.url}/fhir", authorization=f"Bearer {token}")


def _patient_id(record) -> str:  # type: ignore[no-untyped-def]
    return Resource.objects.get(patient=record, resource_type="Patient").fhir_id


def test_fhirpy_reads_searches_across_pages_creates_and_is_denied(
    live_server, clinician, other_clinician, token_for, issue_grant, alice_record, an_observation
):
    issue_grant(actions=["read", "write"])
    client = _client(live_server, token_for(clinician))
    patient_id = _patient_id(alice_record)

    observation = client.reference("Observation", an_observation.fhir_id).to_resource()
    assert observation["id"] == an_observation.fhir_id
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"

    found = client.resources("Observation").search(patient=patient_id).limit(10).fetch_all()
    assert len(found) == len({o["id"] for o in found}) == 25
    pages = AccessLogEntry.objects.filter(action="records.search", outcome="permit").count()
    assert pages == 3
    # fhirpy's count() adds Aidbox's own _totalMethod, which a strict server refuses: the standard _count=0 instead.
    assert client.resources("Observation").search(patient=patient_id).limit(0).fetch_raw()["total"] == 25

    created = client.resource(
        "Observation",
        status="final",
        code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        subject={"reference": f"Patient/{patient_id}"},
        effectiveDateTime="2025-07-01T09:30:00Z",
        valueQuantity={"value": 64, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    )
    created.save()
    assert created["id"]
    assert created["meta"]["versionId"] == "1"
    assert client.reference("Observation", created["id"]).to_resource()["valueQuantity"]["value"] == 64

    stranger = _client(live_server, token_for(other_clinician))
    with pytest.raises(ResourceNotFound) as denied:
        stranger.reference("Observation", an_observation.fhir_id).to_resource()
    with pytest.raises(ResourceNotFound) as missing:
        stranger.reference("Observation", "0" * 36).to_resource()
    assert str(denied.value) == str(missing.value)
    assert stranger.resources("Observation").search(patient=patient_id).fetch_all() == []


def test_fhirpy_sees_a_validation_failure_as_an_operation_outcome(live_server, patient_user, token_for, alice_record):
    client = _client(live_server, token_for(patient_user))

    with pytest.raises(OperationOutcome) as caught:
        client.resource("Observation", status="not-a-status", code={"text": "x"}).save()

    assert caught.value.resource["resourceType"] == "OperationOutcome"
