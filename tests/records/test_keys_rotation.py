"""Master-key rotation rewraps patient keys without re-encrypting records, and survives a crash at any step."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from consent.gate import Caller, resource_read
from healthledger.errors import KeyUnavailable
from healthledger.lib.keyfiles import clear_key_caches, encode_key, key_file_path
from records import keys
from records.models import Patient, Resource, ResourceVersion
from records.services import fhir_ingest, master_key_rotate, patient_create

pytestmark = pytest.mark.django_db

OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
    "valueQuantity": {"value": 5.4},
}


@pytest.fixture
def stored(patient):  # type: ignore[no-untyped-def]
    fhir_ingest(payload=json.dumps(OBSERVATION).encode(), actor="t", patient=patient)
    return Resource.objects.get(patient=patient)


def _read(patient, resource) -> bytes:  # type: ignore[no-untyped-def]
    return resource_read(
        caller=Caller(actor=patient.user),
        patient=patient,
        resource_type=resource.resource_type,
        resource_id=resource.fhir_id,
    )


def test_rotation_rewraps_every_live_patient_key_and_leaves_records_untouched(patient, stored, other_patient):
    before = _read(patient, stored)
    old_id = patient.master_key_id
    ciphertexts = sorted(bytes(c) for c in ResourceVersion.objects.values_list("ciphertext", flat=True))
    assert master_key_rotate() == 2
    new_id = keys.master_keyring(refresh=True).current_id
    assert new_id != old_id
    assert set(Patient.objects.values_list("master_key_id", flat=True)) == {new_id}
    assert sorted(bytes(c) for c in ResourceVersion.objects.values_list("ciphertext", flat=True)) == ciphertexts
    clear_key_caches()
    patient.refresh_from_db()
    assert _read(patient, stored) == before


def test_after_rotation_the_old_key_is_set_aside_and_no_longer_loaded(isolated_keys, patient, stored):
    old = key_file_path("master.key").read_text()
    old_id = patient.master_key_id
    master_key_rotate()
    assert key_file_path(f"master.retired-{old_id}.key").read_text() == old
    assert key_file_path("master.key").read_text() != old
    assert not key_file_path("master.next.key").exists()
    assert list(keys.master_keyring(refresh=True).keys) == [keys.master_keyring().current_id]


def test_a_rotation_that_crashed_before_the_rewrap_leaves_everything_readable_and_can_be_rerun(patient, stored):
    before = _read(patient, stored)
    keys.master_key_rotation_begin()  # the new key file is written... then the process dies
    clear_key_caches()
    assert _read(patient, stored) == before
    # A record created meanwhile is wrapped under the new key already.
    newcomer = patient_create()
    assert newcomer.master_key_id == keys.master_keyring().current_id != patient.master_key_id
    assert master_key_rotate() == 1  # alice; the newcomer is already under the new key
    clear_key_caches()
    assert _read(patient, stored) == before


def test_a_rotation_that_crashed_after_the_rewrap_commits_finishes_on_the_next_run(patient, stored):
    before = _read(patient, stored)
    ring = keys.master_key_rotation_begin()
    for row in Patient.objects.all():
        key = keys.patient_key_part_unwrap(
            patient_id=row.id, wrapped=bytes(row.wrapped_key), master_key_id=row.master_key_id
        )
        row.wrapped_key, row.master_key_id = keys.patient_key_wrap(patient_id=row.id, key=key, keyring=ring)
        row.save()
    clear_key_caches()  # the process died before retiring the old key
    assert _read(patient, stored) == before
    assert master_key_rotate() == 0
    assert not key_file_path("master.next.key").exists()
    clear_key_caches()
    assert _read(patient, stored) == before


def test_rotation_with_the_environment_rewraps_under_the_first_key(settings):
    old, new = b"\x01" * 32, b"\x02" * 32
    settings.HEALTHLEDGER_MASTER_KEY = encode_key(old)
    clear_key_caches()
    alice = patient_create()
    settings.HEALTHLEDGER_MASTER_KEY = f"{encode_key(new)},{encode_key(old)}"
    clear_key_caches()
    assert master_key_rotate() == 1
    settings.HEALTHLEDGER_MASTER_KEY = encode_key(new)
    clear_key_caches()
    alice.refresh_from_db()
    assert alice.master_key_id == keys.master_key_id(new)
    assert (
        len(
            keys.patient_key_unwrap(
                patient_id=alice.id, wrapped=bytes(alice.wrapped_key), master_key_id=alice.master_key_id
            )
        )
        == 32
    )
    assert not key_file_path("master.key").exists()


def test_the_rotate_master_key_command_reports_what_it_did(patient, stored, capsys):
    call_command("rotate_master_key")
    out = capsys.readouterr().out
    current = keys.master_keyring(refresh=True).current_id
    assert out.strip() == f"rewrapped 1 patient key under master key {current}"


def test_a_patient_wrapped_under_a_key_no_longer_present_fails_rotation_loudly(settings, patient):
    settings.HEALTHLEDGER_MASTER_KEY = encode_key(b"\x05" * 32)
    clear_key_caches()
    with pytest.raises(KeyUnavailable):
        master_key_rotate()
