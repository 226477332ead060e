"""The master keyring and the patient keys it wraps: files, environment, caches."""

from __future__ import annotations

import os
import stat

import pytest

from healthledger.errors import IntegrityFailure, KeyUnavailable
from healthledger.lib.keyfiles import clear_key_caches, encode_key, key_file_path
from records import keys
from records.models import Patient
from records.services import patient_create

pytestmark = pytest.mark.django_db


def test_the_master_key_file_is_created_on_first_use_with_owner_only_permissions(isolated_keys):
    assert not (isolated_keys / "master.key").exists()
    ring = keys.master_keyring()
    path = isolated_keys / "master.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ring.current_id == keys.master_key_id(ring.current)
    assert len(ring.current_id) == 16
    assert not ring.from_environment


def test_a_new_patient_key_is_wrapped_under_the_current_master_key_and_never_stored_in_clear():
    patient = patient_create()
    assert patient.master_key_id == keys.master_keyring().current_id
    key = keys.patient_key_unwrap(
        patient_id=patient.id, wrapped=bytes(patient.wrapped_key), master_key_id=patient.master_key_id
    )
    assert len(key) == 32
    assert key not in bytes(patient.wrapped_key)


def test_the_environment_master_key_wins_over_files_and_names_its_id(settings):
    raw = b"\x11" * 32
    settings.HEALTHLEDGER_MASTER_KEY = encode_key(raw)
    clear_key_caches()
    patient = patient_create()
    assert patient.master_key_id == keys.master_key_id(raw)
    assert not key_file_path("master.key").exists()


def test_a_malformed_environment_master_key_fails_loudly(settings):
    settings.HEALTHLEDGER_MASTER_KEY = "not-a-key"
    clear_key_caches()
    with pytest.raises(KeyUnavailable):
        patient_create()


def test_a_wrapped_patient_key_does_not_unwrap_for_another_patient():
    first, second = patient_create(), patient_create()
    clear_key_caches()
    with pytest.raises(IntegrityFailure):
        keys.patient_key_unwrap(
            patient_id=second.id, wrapped=bytes(first.wrapped_key), master_key_id=first.master_key_id
        )


def test_a_patient_key_under_a_master_key_missing_from_the_keyring_fails_loudly():
    patient = patient_create()
    with pytest.raises(KeyUnavailable) as caught:
        keys.patient_key_unwrap(patient_id=patient.id, wrapped=bytes(patient.wrapped_key), master_key_id="0" * 16)
    assert "0" * 16 in str(caught.value)


def test_unwrapped_keys_are_cached_by_their_wrapped_bytes_so_a_rewrapped_key_is_looked_up_afresh():
    patient = patient_create()
    wrapped = bytes(patient.wrapped_key)
    first = keys.patient_key_unwrap(patient_id=patient.id, wrapped=wrapped, master_key_id=patient.master_key_id)
    # Remove the master key: a cached key is still served for the same wrapped bytes...
    key_file_path("master.key").unlink()
    keys._state.clear()
    assert keys.patient_key_unwrap(patient_id=patient.id, wrapped=wrapped, master_key_id=patient.master_key_id) == first
    # ...and forgetting it (as erasure does) means it must be unwrapped again, which now fails.
    keys.patient_key_forget(wrapped=wrapped)
    with pytest.raises(KeyUnavailable):
        keys.patient_key_unwrap(patient_id=patient.id, wrapped=wrapped, master_key_id=patient.master_key_id)
    assert Patient.objects.count() == 1


def test_a_cached_patient_key_is_not_served_for_another_patient_presenting_the_same_wrapped_bytes():
    first, second = patient_create(), patient_create()
    wrapped = bytes(first.wrapped_key)
    keys.patient_key_unwrap(patient_id=first.id, wrapped=wrapped, master_key_id=first.master_key_id)  # now cached
    with pytest.raises(IntegrityFailure):
        keys.patient_key_unwrap(patient_id=second.id, wrapped=wrapped, master_key_id=first.master_key_id)


def test_prefetched_keys_are_the_keys_each_record_unwraps_to_and_an_erased_record_stays_unopenable(monkeypatch):
    from healthledger.errors import KeyDestroyed
    from records.keystore import key_store

    alive, other, erased = patient_create(), patient_create(), patient_create()
    wanted = [(p.id, bytes(p.wrapped_key), p.master_key_id) for p in (alive, other, erased)]
    expected = {p.id: keys.patient_key_unwrap(patient_id=p.id, wrapped=w, master_key_id=k) for p, (_, w, k) in
                zip((alive, other), wanted, strict=False)}  # fmt: skip
    logs = {p.id: keys.patient_log_key(patient_id=p.id) for p in (alive, other)}
    key_store().part_destroy(patient_id=erased.id)
    clear_key_caches()
    calls = []
    store = key_store()
    monkeypatch.setattr(keys, "key_store", lambda: calls.append(1) or store)

    keys.patient_keys_prefetch(wrapped=wanted)

    assert len(calls) == 1  # one key-store call for the three records
    for patient_id, wrapped, key_id in wanted[:2]:
        assert (
            keys.patient_key_unwrap(patient_id=patient_id, wrapped=wrapped, master_key_id=key_id)
            == expected[patient_id]
        )
        assert keys.patient_log_key(patient_id=patient_id) == logs[patient_id]
    assert len(calls) == 1  # served from the cache the prefetch filled
    with pytest.raises(KeyDestroyed):
        keys.patient_key_unwrap(patient_id=erased.id, wrapped=wanted[2][1], master_key_id=wanted[2][2])
