"""The batch forms of the crypto seam give exactly what the one-at-a-time forms give, and fail the same way."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid

import pytest

from healthledger.errors import IntegrityFailure
from records import crypto
from records.envelope import VersionOpener, head_mac, version_aad, version_open, version_seal
from records.selectors import StoredVersion


@pytest.mark.parametrize("key_size", [16, 32, 64, 65, 100])
@pytest.mark.parametrize("size", [16, 32])
def test_keyed_digester_is_hmac_sha256_for_every_key_length(key_size: int, size: int) -> None:
    key = os.urandom(key_size)
    digester = crypto.KeyedDigester(key, size=size)
    for message in (b"", b"healthledger/head|x", os.urandom(200)):
        assert digester(message) == hmac.new(key, message, hashlib.sha256).digest()[:size]
        assert digester(message) == crypto.keyed_digest(key=key, data=message, size=size)


def _sealed() -> tuple[bytes, uuid.UUID, bytes, bytes, bytes]:
    patient_key, patient_id = crypto.key_generate(), uuid.uuid4()
    aad = version_aad(patient_id=patient_id, resource_type="Observation", fhir_id="o-1", version=3)
    ciphertext, wrapped = version_seal(patient_key=patient_key, aad=aad, plaintext=b'{"resourceType":"Observation"}')
    return patient_key, patient_id, aad, ciphertext, wrapped


def test_the_opener_opens_and_checks_what_the_single_read_does() -> None:
    patient_key, patient_id, aad, ciphertext, wrapped = _sealed()
    opener = VersionOpener(patient_key, patient_id)
    assert opener.aad(resource_type="Observation", fhir_id="o-1", version=3) == aad
    assert opener.head_mac(aad) == head_mac(patient_key=patient_key, aad=aad)
    opened = opener.open(aad=aad, ciphertext=ciphertext, wrapped_data_key=wrapped)
    assert opened == version_open(patient_key=patient_key, aad=aad, ciphertext=ciphertext, wrapped_data_key=wrapped)


@pytest.mark.parametrize("damage", ["ciphertext", "wrapped key added", "aad", "key", "truncated"])
def test_the_opener_refuses_anything_tampered_with(damage: str) -> None:
    patient_key, patient_id, aad, ciphertext, wrapped = _sealed()
    flip = lambda blob: blob[:-1] + bytes([blob[-1] ^ 1])  # noqa: E731
    if damage == "ciphertext":
        ciphertext = flip(ciphertext)
    elif damage == "wrapped key added":
        # Read as the envelope's format 1, under a data key that did not seal it (format 1: test_envelope_formats).
        wrapped = crypto.aead_seal(
            key=patient_key, plaintext=crypto.key_generate(), aad=b"healthledger/data-key|" + aad
        )
    elif damage == "aad":
        aad = version_aad(patient_id=patient_id, resource_type="Observation", fhir_id="o-1", version=2)
    elif damage == "key":
        patient_key = crypto.key_generate()
    else:
        ciphertext = ciphertext[:20]
    with pytest.raises(IntegrityFailure):
        VersionOpener(patient_key, patient_id).open(aad=aad, ciphertext=ciphertext, wrapped_data_key=wrapped)


def test_open_each_checks_each_version_as_head_mac_and_open_do_one_at_a_time() -> None:
    patient_key, patient_id = crypto.key_generate(), uuid.uuid4()
    opener = VersionOpener(patient_key, patient_id)
    rows, expected = [], []
    cases = ["current", "older", "rolled back", "flipped", "truncated", "format 1", "format 1 flipped", "moved"]
    for n, case in enumerate(cases):
        fhir_id, version = f"o-{n}", 2
        aad = version_aad(patient_id=patient_id, resource_type="Observation", fhir_id=fhir_id, version=version)
        plaintext = f'{{"resourceType":"Observation","id":"{fhir_id}"}}'.encode()
        ciphertext, wrapped = version_seal(patient_key=patient_key, aad=aad, plaintext=plaintext)
        if case.startswith("format 1"):
            data_key = crypto.key_generate()
            wrapped = crypto.aead_seal(key=patient_key, plaintext=data_key, aad=b"healthledger/data-key|" + aad)
            ciphertext = crypto.aead_seal(key=data_key, plaintext=plaintext, aad=b"healthledger/version|" + aad)
        current, head = version, head_mac(patient_key=patient_key, aad=aad)
        if case == "older":
            current = 3  # an older version is served without the head check, as a vread is
        if case == "rolled back":
            head = head_mac(patient_key=patient_key, aad=aad[:-1] + b"3")  # the MAC names version 3
        if case in ("flipped", "format 1 flipped"):
            ciphertext = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
        if case == "truncated":
            ciphertext = ciphertext[:20]
        if case == "moved":
            fhir_id = "o-elsewhere"  # another row's ciphertext: its associated data no longer matches
        rows.append(
            StoredVersion(patient_id, "Observation", fhir_id, version, ciphertext, wrapped, b"", "m", current, head)
        )
        one_at_a_time: bytes | None
        row_aad = opener.aad(resource_type="Observation", fhir_id=fhir_id, version=version)
        if version == current and not hmac.compare_digest(head, opener.head_mac(row_aad)):
            one_at_a_time = None
        else:
            try:
                one_at_a_time = opener.open(aad=row_aad, ciphertext=ciphertext, wrapped_data_key=wrapped)
            except IntegrityFailure:
                one_at_a_time = None
        expected.append(one_at_a_time)

    assert opener.open_each(rows) == expected
    assert [body is not None for body in expected] == [True, True, False, False, False, True, False, False]


def test_open_each_checked_opens_only_what_its_mac_vouches_for() -> None:
    key, head = crypto.key_generate(), crypto.KeyedDigester(crypto.key_generate())
    aead = crypto.AeadKey(key)
    sealed = crypto.aead_seal(key=key, plaintext=b"body", aad=b"a")
    items = [
        (sealed, b"a", b"head|a", head(b"head|a")),  # vouched for: opened
        (sealed, b"a", None, b""),  # nothing to check (an older version): opened
        (sealed, b"a", b"head|a", head(b"head|b")),  # the MAC names another message
        (sealed, b"a", b"head|a", head(b"head|a")[:-1] + b"\0"),  # a MAC one byte off
        (sealed, b"b", b"head|a", head(b"head|a")),  # vouched for, but sealed with other associated data
        (sealed[:-1] + bytes([sealed[-1] ^ 1]), b"a", None, b""),  # flipped
        (sealed[:27], b"a", None, b""),  # shorter than a nonce and a tag
        (None, b"a", b"head|a", head(b"head|a")),  # left to the caller
    ]
    assert aead.open_each_checked(head, items) == [b"body", b"body", None, None, None, None, None, None]


def test_references_of_a_page_are_each_versions_reference() -> None:
    rows = [
        StoredVersion(uuid.uuid4(), kind, f"id-{n}", n + 1, b"", b"", None, "m", n + 1, b"")
        for n, kind in enumerate(("Observation", "Encounter", "Patient"))
    ]
    assert (
        StoredVersion.references(rows)
        == [row.reference for row in rows]
        == [
            "Observation/id-0/_history/1",
            "Encounter/id-1/_history/2",
            "Patient/id-2/_history/3",
        ]
    )
