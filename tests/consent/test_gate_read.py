"""The minimal gate: a patient reads their own record; everyone else is denied as if nothing existed; all logged."""

from __future__ import annotations

import json

import orjson
import pytest

from audit.models import AccessLogEntry
from consent.gate import Caller, record_export, resource_read
from healthledger.errors import ResourceNotFound
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db

PATIENT_URL = "urn:uuid:6a1f0c52-3d4e-4b7a-9f0e-2c8d1b3a4e5f"


def _bundle() -> bytes:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": PATIENT_URL},
        "valueQuantity": {"value": 6.1},
    }
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": PATIENT_URL,
                    "resource": {"resourceType": "Patient", "gender": "female"},
                    "request": {"method": "POST", "url": "Patient"},
                },
                {
                    "fullUrl": "urn:uuid:0b7e2d4c-5a6f-4e3d-8c1b-9a0f1e2d3c4b",
                    "resource": observation,
                    "request": {"method": "POST", "url": "Observation"},
                },
            ],
        }
    ).encode()


@pytest.fixture
def observation_id(patient) -> str:  # type: ignore[no-untyped-def]
    result = fhir_ingest(payload=_bundle(), actor="t", patient=patient)
    (ref,) = [r for r in result.patients[patient.pk].created if r.startswith("Observation/")]
    return ref.split("/")[1]


def _read(actor, patient, resource_id: str) -> bytes:  # type: ignore[no-untyped-def]
    return resource_read(
        caller=Caller(actor=actor), patient=patient, resource_type="Observation", resource_id=resource_id
    )


def test_the_patient_reads_her_own_resource_and_the_read_is_logged(patient, patient_user, observation_id):
    body = _read(patient_user, patient, observation_id)
    served = orjson.loads(body)
    assert served["id"] == observation_id
    assert served["subject"] == {"reference": f"Patient/{patient.fhir_id}"}
    entry = AccessLogEntry.objects.get(action="records.read")
    assert entry.outcome == "permit"
    assert entry.actor == f"user:{patient_user.pk}"
    assert entry.patient_ref == patient.pk
    assert entry.purpose == "PATRQT"
    assert entry.resource_ids == [f"Observation/{observation_id}/_history/1"]


@pytest.mark.parametrize("persona", ["clinician", "other_clinician", "researcher", "steward", "other_patient"])
def test_everyone_else_is_denied_with_not_found_and_the_deny_is_logged(request, persona, patient, observation_id):
    who = request.getfixturevalue(persona)
    actor = who.user if persona == "other_patient" else who
    with pytest.raises(ResourceNotFound) as caught:
        _read(actor, patient, observation_id)
    assert caught.value.status == 404
    entry = AccessLogEntry.objects.get(action="records.read")
    assert entry.outcome == "deny"
    assert entry.actor == f"user:{actor.pk}"
    assert entry.patient_ref == patient.pk
    assert entry.resource_ids == [f"Observation/{observation_id}"]


def test_a_deny_looks_exactly_like_a_missing_resource(clinician, patient, observation_id):
    with pytest.raises(ResourceNotFound) as existing:
        _read(clinician, patient, observation_id)
    with pytest.raises(ResourceNotFound) as missing:
        _read(clinician, patient, "does-not-exist")
    assert (str(existing.value), existing.value.status) == (str(missing.value), missing.value.status)


def test_the_patient_cannot_reach_another_record_through_her_own(patient, patient_user, other_patient):
    theirs = fhir_ingest(payload=_bundle().replace(b"6a1f0c52", b"7b2f0c52"), actor="t", patient=other_patient)
    (ref,) = [r for r in theirs.patients[other_patient.pk].created if r.startswith("Observation/")]
    with pytest.raises(ResourceNotFound):
        _read(patient_user, patient, ref.split("/")[1])
    with pytest.raises(ResourceNotFound):
        _read(patient_user, other_patient, ref.split("/")[1])
    assert list(AccessLogEntry.objects.filter(action="records.read").values_list("outcome", flat=True)) == ["deny"]


def test_a_missing_resource_of_her_own_logs_no_read(patient, patient_user, observation_id):
    with pytest.raises(ResourceNotFound):
        _read(patient_user, patient, "not-there")
    assert not AccessLogEntry.objects.filter(action="records.read").exists()


def test_an_inactive_account_is_denied(patient, patient_user, observation_id):
    patient_user.is_active = False
    patient_user.save()
    with pytest.raises(ResourceNotFound):
        _read(patient_user, patient, observation_id)


def test_export_returns_every_current_resource_in_one_bundle_logged_once(patient, patient_user, observation_id):
    bundle = orjson.loads(record_export(caller=Caller(actor=patient_user), patient=patient))
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    assert sorted(e["fullUrl"] for e in bundle["entry"]) == sorted(
        [f"Observation/{observation_id}", f"Patient/{patient.__class__.objects.get(pk=patient.pk).fhir_id}"]
    )
    assert all(e["resource"]["meta"]["versionId"] == "1" for e in bundle["entry"])
    (entry,) = AccessLogEntry.objects.filter(action="records.export")
    assert entry.outcome == "permit"
    assert len(entry.resource_ids) == 2


def test_export_by_anyone_else_is_denied_and_logged(clinician, patient, observation_id):
    with pytest.raises(ResourceNotFound):
        record_export(caller=Caller(actor=clinician), patient=patient)
    assert AccessLogEntry.objects.get(action="records.export").outcome == "deny"
