"""Tampering and missing keys fail loudly: flipped bytes, moved ciphertext, a wrong master key, a bare dump."""

from __future__ import annotations

import base64
import io
import json
import uuid

import pytest
from django.core.management import call_command

from audit.models import AccessLogEntry
from consent.gate import Caller, resource_read
from healthledger.errors import IntegrityFailure, KeyUnavailable
from healthledger.lib.keyfiles import clear_key_caches, encode_key, key_file_path
from records.models import Patient, Resource, ResourceVersion
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db

FAMILY = "Zyxwvutsrq"  # a marker that must never appear in the database in plaintext


def _import(patient: Patient, *values: float) -> list[tuple[str, str]]:
    url = f"urn:uuid:{uuid.uuid4()}"
    entries = [
        {
            "fullUrl": url,
            "resource": {"resourceType": "Patient", "name": [{"family": FAMILY}]},
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    for value in values:
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
            "subject": {"reference": url},
            "valueQuantity": {"value": value},
        }
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": observation,
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    payload = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()
    result = fhir_ingest(payload=payload, actor="t", patient=patient)
    refs = [ref.split("/_history/")[0].split("/") for ref in result.patients[patient.pk].created]
    return [(t, i) for t, i in refs if t == "Observation"]


def _version(fhir_id: str) -> ResourceVersion:
    return ResourceVersion.objects.get(resource__fhir_id=fhir_id)


def _flip(blob: bytes, at: int) -> bytes:
    raw = bytearray(blob)
    raw[at] ^= 0x01
    return bytes(raw)


def test_a_flipped_ciphertext_byte_fails_loudly_and_logs_no_read(patient, patient_user):
    ((resource_type, resource_id),) = _import(patient, 1.0)
    row = _version(resource_id)
    row.ciphertext = _flip(bytes(row.ciphertext), 20)
    row.save()
    with pytest.raises(IntegrityFailure):
        resource_read(
            caller=Caller(actor=patient_user), patient=patient, resource_type=resource_type, resource_id=resource_id
        )
    assert not AccessLogEntry.objects.filter(action="records.read").exists()


def test_a_wrapped_data_key_put_on_a_row_that_has_none_fails_loudly(patient, patient_user, other_patient):
    # Rows written today have no data key of their own (records.envelope, format 2); one given a
    # wrapped key is read as the older format, and no key of the patient's opens it that way.
    ((resource_type, resource_id),) = _import(patient, 1.0)
    row = _version(resource_id)
    assert bytes(row.wrapped_data_key) == b""
    row.wrapped_data_key = bytes(Patient.objects.get(pk=other_patient.pk).wrapped_key)
    row.save()
    with pytest.raises(IntegrityFailure):
        resource_read(
            caller=Caller(actor=patient_user), patient=patient, resource_type=resource_type, resource_id=resource_id
        )


def test_a_ciphertext_moved_to_another_row_of_the_same_patient_fails_loudly(patient, patient_user):
    (_, first), (resource_type, second) = _import(patient, 1.0, 2.0)
    source, target = _version(first), _version(second)
    target.ciphertext, target.wrapped_data_key = bytes(source.ciphertext), bytes(source.wrapped_data_key)
    target.save()
    with pytest.raises(IntegrityFailure):
        resource_read(
            caller=Caller(actor=patient_user), patient=patient, resource_type=resource_type, resource_id=second
        )


def test_a_ciphertext_moved_to_an_older_version_row_fails_loudly(patient, patient_user):
    url = "urn:uuid:2f1a4f7e-1c61-4b7e-9a44-7d2b2f0f7a11"

    def observation(value: float) -> bytes:
        return json.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": url,
                        "resource": {
                            "resourceType": "Observation",
                            "status": "final",
                            "code": {"text": "x"},
                            "valueQuantity": {"value": value},
                        },
                        "request": {"method": "POST", "url": "Observation"},
                    }
                ],
            }
        ).encode()

    fhir_ingest(payload=observation(1.0), actor="t", patient=patient)
    fhir_ingest(payload=observation(2.0), actor="t", patient=patient)
    resource = Resource.objects.get(patient=patient)
    v1, v2 = resource.versions.order_by("version")
    v1.ciphertext, v1.wrapped_data_key = bytes(v2.ciphertext), bytes(v2.wrapped_data_key)
    v1.save()
    with pytest.raises(IntegrityFailure):
        resource_read(
            caller=Caller(actor=patient_user),
            patient=patient,
            resource_type="Observation",
            resource_id=resource.fhir_id,
            version=1,
        )


def test_a_ciphertext_moved_to_another_patients_row_fails_loudly(patient, patient_user, other_patient):
    ((_, theirs),) = _import(other_patient, 9.0)
    ((resource_type, mine),) = _import(patient, 1.0)
    source, target = _version(theirs), _version(mine)
    target.ciphertext, target.wrapped_data_key = bytes(source.ciphertext), bytes(source.wrapped_data_key)
    target.save()
    with pytest.raises(IntegrityFailure):
        resource_read(caller=Caller(actor=patient_user), patient=patient, resource_type=resource_type, resource_id=mine)


def test_a_wrapped_patient_key_swapped_between_patients_fails_loudly(patient, patient_user, other_patient):
    ((resource_type, mine),) = _import(patient, 1.0)
    Patient.objects.filter(pk=patient.pk).update(wrapped_key=bytes(other_patient.wrapped_key))
    clear_key_caches()
    with pytest.raises(IntegrityFailure):
        resource_read(caller=Caller(actor=patient_user), patient=patient, resource_type=resource_type, resource_id=mine)


def test_a_wrong_master_key_file_fails_loudly(patient, patient_user):
    ((resource_type, resource_id),) = _import(patient, 1.0)
    key_file_path("master.key").write_text(encode_key(b"\x07" * 32) + "\n")
    clear_key_caches()
    with pytest.raises(KeyUnavailable) as caught:
        resource_read(
            caller=Caller(actor=patient_user), patient=patient, resource_type=resource_type, resource_id=resource_id
        )
    assert patient.master_key_id in str(caught.value)


def test_a_wrong_master_key_in_the_environment_fails_loudly(patient, patient_user, settings):
    ((resource_type, resource_id),) = _import(patient, 1.0)
    settings.HEALTHLEDGER_MASTER_KEY = encode_key(b"\x42" * 32)
    clear_key_caches()
    with pytest.raises(KeyUnavailable):
        resource_read(
            caller=Caller(actor=patient_user), patient=patient, resource_type=resource_type, resource_id=resource_id
        )


def test_a_database_dump_alone_holds_no_plaintext_and_no_key_and_cannot_be_decrypted(
    patient, patient_user, isolated_keys, tmp_path, settings
):
    ((resource_type, resource_id),) = _import(patient, 1.0)
    dump = io.StringIO()
    call_command("dumpdata", "records", stdout=dump)
    text = dump.getvalue()
    binary = b"".join(
        bytes(blob)
        for blob in [
            *ResourceVersion.objects.values_list("ciphertext", flat=True),
            *ResourceVersion.objects.values_list("wrapped_data_key", flat=True),
            *Patient.objects.values_list("wrapped_key", flat=True),
        ]
    )
    master = key_file_path("master.key").read_text().strip()
    master_raw = base64.urlsafe_b64decode(master + "=" * (-len(master) % 4))
    for secret in (FAMILY.encode(), b"2339-0", master_raw):
        assert secret not in binary
    assert FAMILY not in text
    assert master not in text
    # The dump restored where the keys are not: nothing opens.
    settings.KEYS_DIR = tmp_path / "elsewhere"
    clear_key_caches()
    with pytest.raises(KeyUnavailable):
        resource_read(
            caller=Caller(actor=patient_user), patient=patient, resource_type=resource_type, resource_id=resource_id
        )


def _two_versions(patient: Patient) -> Resource:
    url = "urn:uuid:5b7c1d2e-3f40-4a51-8b62-9c7d8e9fa0b1"

    def observation(value: float) -> bytes:
        entry = {
            "fullUrl": url,
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                "valueQuantity": {"value": value},
            },
            "request": {"method": "POST", "url": "Observation"},
        }
        return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]}).encode()

    fhir_ingest(payload=observation(1.0), actor="t", patient=patient)
    fhir_ingest(payload=observation(2.0), actor="t", patient=patient)
    return Resource.objects.get(patient=patient)


@pytest.mark.parametrize("delete_newest", [False, True], ids=["moved back", "newest deleted and moved back"])
def test_a_rolled_back_current_version_fails_loudly_on_read_search_and_export(patient, patient_user, delete_newest):
    from consent.gate import SearchCriteria, record_export, resource_search, resource_search_counted

    resource = _two_versions(patient)
    read = {"caller": Caller(actor=patient_user), "patient": patient, "resource_type": "Observation"}
    assert json.loads(resource_read(**read, resource_id=resource.fhir_id))["valueQuantity"]["value"] == 2.0
    if delete_newest:
        ResourceVersion.objects.filter(resource=resource, version=2).delete()
    # An insider with the database (not the patient's key) shows the old value as the current one.
    Resource.objects.filter(pk=resource.pk).update(current_version=1)
    with pytest.raises(IntegrityFailure, match="moved back"):
        resource_read(**read, resource_id=resource.fhir_id)
    with pytest.raises(IntegrityFailure):
        resource_search(**read)
    with pytest.raises(IntegrityFailure):
        resource_search_counted(**read, criteria=SearchCriteria())
    # An export leaves the rolled-back resource out and says so in the Bundle.
    exported = json.loads(record_export(caller=Caller(actor=patient_user), patient=patient))
    [outcome] = [e["resource"] for e in exported["entry"] if e["resource"]["resourceType"] == "OperationOutcome"]
    assert f"Observation/{resource.fhir_id}/_history/1" in outcome["issue"][0]["diagnostics"]
    # Asked for by number, the version the row now calls current is refused too: the row lies about it.
    with pytest.raises(IntegrityFailure):
        resource_read(**read, resource_id=resource.fhir_id, version=1)


def test_copying_an_older_rows_mac_does_not_hide_a_rollback(patient, patient_user, other_patient):
    resource = _two_versions(patient)
    # No MAC in the database names version 1 as the newest; another resource's MAC names itself.
    ((_, theirs),) = _import(other_patient, 9.0)
    foreign = Resource.objects.get(fhir_id=theirs)
    Resource.objects.filter(pk=resource.pk).update(current_version=1, head_mac=bytes(foreign.head_mac))
    with pytest.raises(IntegrityFailure):
        resource_read(
            caller=Caller(actor=patient_user),
            patient=patient,
            resource_type="Observation",
            resource_id=resource.fhir_id,
        )
