"""Erasure destroys the patient's key: every version becomes unreadable, and reads say so."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import call_command

from audit.models import AccessLogEntry
from consent.gate import Caller, record_export, resource_read
from healthledger.errors import KeyDestroyed
from records.models import IndexToken, Resource, ResourceVersion
from records.selectors import resource_search
from records.services import fhir_ingest, patient_erase

pytestmark = pytest.mark.django_db


def _observation_bundle(value: float) -> bytes:
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:8d0f7c1e-4d7b-4c55-9b1c-0e7f3d1f2a90",
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                        "effectiveDateTime": "2022-02-02",
                        "valueQuantity": {"value": value},
                    },
                    "request": {"method": "POST", "url": "Observation"},
                }
            ],
        }
    ).encode()


@pytest.fixture
def stored(patient):  # type: ignore[no-untyped-def]
    fhir_ingest(payload=_observation_bundle(7.0), actor="t", patient=patient)
    fhir_ingest(payload=_observation_bundle(8.0), actor="t", patient=patient)
    return Resource.objects.get(patient=patient)


def test_erasure_makes_every_version_unreadable_and_the_read_says_so(patient, patient_user, stored):
    assert resource_read(
        caller=Caller(actor=patient_user), patient=patient, resource_type="Observation", resource_id=stored.fhir_id
    )
    erased = patient_erase(patient=patient, actor=f"user:{patient_user.pk}")
    assert erased.wrapped_key is None
    assert erased.erased_at is not None
    for version in (None, 1, 2):
        with pytest.raises(KeyDestroyed) as caught:
            resource_read(
                caller=Caller(actor=patient_user),
                patient=patient,
                resource_type="Observation",
                resource_id=stored.fhir_id,
                version=version,
            )
        assert caught.value.status == 410
        assert "erased" in str(caught.value)
    with pytest.raises(KeyDestroyed):
        record_export(caller=Caller(actor=patient_user), patient=patient)
    # The rows are gone from the live database (backups keep theirs, and without the key they open nothing).
    assert not ResourceVersion.objects.filter(resource__patient=patient).exists()
    assert not Resource.objects.filter(patient=patient).exists()


def test_erasure_deletes_the_blind_index_and_is_logged(patient, patient_user, stored):
    assert IndexToken.objects.filter(resource=stored).exists()
    patient_erase(patient=patient, actor=f"user:{patient_user.pk}")
    assert not IndexToken.objects.filter(resource__patient=patient).exists()
    assert list(resource_search(patient=patient, code="http://loinc.org|4548-4")) == []
    entry = AccessLogEntry.objects.get(action="records.erase")
    assert entry.patient_ref == patient.pk
    assert entry.outcome == "permit"


def test_erasure_leaves_other_patients_readable(patient, patient_user, other_patient, stored):
    fhir_ingest(payload=_observation_bundle(5.0), actor="t", patient=other_patient)
    theirs = Resource.objects.get(patient=other_patient)
    patient_erase(patient=patient, actor="t")
    body = resource_read(
        caller=Caller(actor=other_patient.user),
        patient=other_patient,
        resource_type="Observation",
        resource_id=theirs.fhir_id,
    )
    assert json.loads(body)["valueQuantity"]["value"] == 5.0


def test_nothing_can_be_written_into_an_erased_record(patient, stored):
    patient_erase(patient=patient, actor="t")
    with pytest.raises(KeyDestroyed):
        fhir_ingest(payload=_observation_bundle(9.0), actor="t", patient=patient)
    assert not ResourceVersion.objects.filter(resource__patient=patient).exists()


def test_a_bundle_for_an_erased_record_is_refused_and_the_same_export_still_fills_a_new_record(
    synthea_files, patient, other_patient
):
    payload = synthea_files[1].read_bytes()
    first = fhir_ingest(payload=payload, actor="t", patient=patient)
    patient_erase(patient=patient, actor="t")
    count = ResourceVersion.objects.count()
    with pytest.raises(KeyDestroyed):
        fhir_ingest(payload=payload.replace(b'"final"', b'"amended"', 1), actor="t", patient=patient)
    assert ResourceVersion.objects.count() == count
    again = fhir_ingest(payload=payload, actor="t", patient=other_patient)
    assert again.created == first.created


def test_erasing_twice_changes_nothing_the_second_time(patient, stored):
    first = patient_erase(patient=patient, actor="t")
    again = patient_erase(patient=patient, actor="t")
    assert again.erased_at == first.erased_at
    assert AccessLogEntry.objects.filter(action="records.erase").count() == 1


def test_the_erase_patient_command_erases_by_id(patient, patient_user, stored, capsys):
    call_command("erase_patient", str(patient.pk), "--no-input")
    patient.refresh_from_db()
    assert patient.is_erased
    assert str(patient.pk) in capsys.readouterr().out
    with pytest.raises(KeyDestroyed):
        resource_read(
            caller=Caller(actor=patient_user), patient=patient, resource_type="Observation", resource_id=stored.fhir_id
        )


def test_the_erase_patient_command_refuses_an_unknown_id():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("erase_patient", str(uuid.uuid4()), "--no-input")
