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
