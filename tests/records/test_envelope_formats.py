"""Both envelope formats open: what is written today (format 2) and the rows written before it (format 1).

Format 1 is built here with its own recipe, not with the code under test, so these tests pin
what older rows hold: a change that stops them opening fails here.
"""

from __future__ import annotations

import json
import uuid

import pytest

from consent.gate import Caller, resource_read
from healthledger.errors import IntegrityFailure
from records import crypto, decrypt, keys
from records.envelope import VersionOpener, version_aad, version_open, version_seal
from records.models import Patient, Resource, ResourceVersion
from records.selectors import StoredVersion, stored_version_get, stored_versions_current
from records.selectors.pages import stored_page_of_type
from records.services import fhir_ingest

PLAINTEXT = b'{"resourceType":"Observation","status":"final"}'


def _format_1_seal(*, patient_key: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """(ciphertext, wrapped data key) as version_seal wrote them before format 2: a data key of the version's own."""
    data_key = crypto.key_generate()
    wrapped = crypto.aead_seal(key=patient_key, plaintext=data_key, aad=b"healthledger/data-key|" + aad)
    return crypto.aead_seal(key=data_key, plaintext=plaintext, aad=b"healthledger/version|" + aad), wrapped


def _seal(form: int, *, patient_key: bytes, aad: bytes, plaintext: bytes = PLAINTEXT) -> tuple[bytes, bytes]:
    if form == 1:
        return _format_1_seal(patient_key=patient_key, aad=aad, plaintext=plaintext)
    return version_seal(patient_key=patient_key, aad=aad, plaintext=plaintext)


def _aad(patient_id: uuid.UUID, *, fhir_id: str = "o-1", version: int = 3) -> bytes:
    return version_aad(patient_id=patient_id, resource_type="Observation", fhir_id=fhir_id, version=version)


def _open_both_ways(
    *, patient_key: bytes, patient_id: uuid.UUID, aad: bytes, ciphertext: bytes, wrapped: bytes
) -> bytes:
    """The single read's and the batch's plaintext, which must agree."""
    single = version_open(patient_key=patient_key, aad=aad, ciphertext=ciphertext, wrapped_data_key=wrapped)
    batch = VersionOpener(patient_key, patient_id).open(aad=aad, ciphertext=ciphertext, wrapped_data_key=wrapped)
    assert single == batch
    return single


def test_a_version_sealed_today_has_no_wrapped_data_key_and_is_sealed_under_the_content_subkey() -> None:
    patient_key, patient_id = crypto.key_generate(), uuid.uuid4()
    aad = _aad(patient_id)
    ciphertext, wrapped = version_seal(patient_key=patient_key, aad=aad, plaintext=PLAINTEXT)
    assert wrapped == b""
    assert len(ciphertext) == crypto.NONCE_BYTES + len(PLAINTEXT) + crypto.TAG_BYTES
    content_key = crypto.subkey_derive(key=patient_key, purpose=b"healthledger/content-key")
    assert crypto.aead_open(key=content_key, sealed=ciphertext, aad=b"healthledger/version-2|" + aad) == PLAINTEXT
    opened = _open_both_ways(
        patient_key=patient_key, patient_id=patient_id, aad=aad, ciphertext=ciphertext, wrapped=wrapped
    )
    assert opened == PLAINTEXT


def test_a_version_sealed_before_format_2_still_opens_to_the_same_plaintext() -> None:
    patient_key, patient_id = crypto.key_generate(), uuid.uuid4()
    aad = _aad(patient_id)
    ciphertext, wrapped = _format_1_seal(patient_key=patient_key, aad=aad, plaintext=PLAINTEXT)
    assert len(wrapped) == crypto.NONCE_BYTES + crypto.KEY_BYTES + crypto.TAG_BYTES
    opened = _open_both_ways(
        patient_key=patient_key, patient_id=patient_id, aad=aad, ciphertext=ciphertext, wrapped=wrapped
    )
    assert opened == PLAINTEXT


def _flip(blob: bytes, at: int = -1) -> bytes:
    raw = bytearray(blob)
    raw[at] ^= 0x01
    return bytes(raw)


_BOTH = ["moved to another row", "moved to another version", "moved to another patient", "flipped byte", "truncated"]
_CASES = [
    *[(form, damage) for form in (1, 2) for damage in _BOTH],
    (1, "flipped wrapped key byte"),
    # Format 1 read as format 2: another key and another label, so no plaintext.
    (1, "wrapped key blanked"),
    # Format 2 read as format 1, even with a data key properly wrapped for this very row.
    (2, "wrapped key added"),
]


@pytest.mark.parametrize(("form", "damage"), _CASES)
def test_a_tampered_version_of_either_format_fails_authentication_on_both_paths(form: int, damage: str) -> None:
    patient_key, patient_id = crypto.key_generate(), uuid.uuid4()
    aad = _aad(patient_id)
    ciphertext, wrapped = _seal(form, patient_key=patient_key, aad=aad)
    if damage == "moved to another row":
        aad = _aad(patient_id, fhir_id="o-2")
    elif damage == "moved to another version":
        aad = _aad(patient_id, version=2)
    elif damage == "moved to another patient":
        patient_key, patient_id = crypto.key_generate(), uuid.uuid4()
        aad = _aad(patient_id)
    elif damage == "flipped byte":
        ciphertext = _flip(ciphertext)
    elif damage == "truncated":
        ciphertext = ciphertext[: crypto.NONCE_BYTES + crypto.TAG_BYTES - 1]
    elif damage == "flipped wrapped key byte":
        wrapped = _flip(wrapped)
    elif damage == "wrapped key blanked":
        wrapped = b""
    else:
        wrapped = _format_1_seal(patient_key=patient_key, aad=aad, plaintext=b"")[1]
    with pytest.raises(IntegrityFailure):
        version_open(patient_key=patient_key, aad=aad, ciphertext=ciphertext, wrapped_data_key=wrapped)
    with pytest.raises(IntegrityFailure):
        VersionOpener(patient_key, patient_id).open(aad=aad, ciphertext=ciphertext, wrapped_data_key=wrapped)


def _import(patient: Patient, count: int) -> None:
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                "valueQuantity": {"value": value},
            },
            "request": {"method": "POST", "url": "Observation"},
        }
        for value in range(count)
    ]
    payload = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()
    fhir_ingest(payload=payload, actor="t", patient=patient)


def _reseal_as_format_1(stored: StoredVersion, plaintext: bytes) -> None:
    """Rewrite a stored version as a row written before format 2 holds it."""
    patient = Patient.objects.get(pk=stored.patient_id)
    patient_key = keys.patient_key_unwrap(
        patient_id=patient.pk, wrapped=bytes(patient.wrapped_key or b""), master_key_id=patient.master_key_id
    )
    aad = version_aad(
        patient_id=patient.pk, resource_type=stored.resource_type, fhir_id=stored.fhir_id, version=stored.version
    )
    ciphertext, wrapped = _format_1_seal(patient_key=patient_key, aad=aad, plaintext=plaintext)
    rows = ResourceVersion.objects.filter(
        resource__patient_id=patient.pk, resource__fhir_id=stored.fhir_id, version=stored.version
    )
    assert rows.update(ciphertext=ciphertext, wrapped_data_key=wrapped) == 1
    # ... and so does the copy its resource row carries, as the backfill of records migration 0006 made it.
    copies = Resource.objects.filter(
        patient_id=patient.pk,
        resource_type=stored.resource_type,
        fhir_id=stored.fhir_id,
        current_version=stored.version,
    )
    assert copies.update(current_ciphertext=ciphertext, current_wrapped_data_key=wrapped) == 1


@pytest.mark.django_db
def test_ingest_stores_an_empty_wrapped_data_key_by_the_few_row_insert_and_by_copy(patient):
    _import(patient, 1)  # PostgreSQL: INSERT ... unnest
    _import(patient, 70)  # PostgreSQL: COPY (past records.ingest.rows.FEW_ROWS)
    wrapped = [bytes(w) for w in ResourceVersion.objects.values_list("wrapped_data_key", flat=True)]
    assert wrapped == [b""] * 71
    opened = decrypt.stored_versions_decrypt_each(stored_versions_current(patient=patient))
    assert sorted(json.loads(text)["valueQuantity"]["value"] for text in opened if text is not None) == sorted(
        [0, *range(70)]
    )


@pytest.mark.django_db
def test_a_format_1_row_opens_to_the_same_plaintext_by_the_single_read_the_batch_and_the_gate(patient, patient_user):
    _import(patient, 1)
    [stored] = stored_versions_current(patient=patient)
    plaintext = decrypt.stored_version_decrypt(stored)
    _reseal_as_format_1(stored, plaintext)

    older = stored_version_get(patient=patient, resource_type="Observation", resource_id=stored.fhir_id)
    assert older is not None
    assert len(older.wrapped_data_key) == crypto.NONCE_BYTES + crypto.KEY_BYTES + crypto.TAG_BYTES
    assert older.ciphertext != stored.ciphertext
    assert decrypt.stored_version_decrypt(older) == plaintext
    assert decrypt.stored_versions_decrypt_each([older]) == [plaintext]
    read = resource_read(
        caller=Caller(actor=patient_user), patient=patient, resource_type="Observation", resource_id=stored.fhir_id
    )
    assert read == plaintext
    # A search's page reads the resource row's copy: format 1 there too.
    page, total = stored_page_of_type(patient=patient, resource_type="Observation", limit=10, offset=0)
    assert total == 1
    assert [len(item.wrapped_data_key) for item in page] == [len(older.wrapped_data_key)]
    assert decrypt.stored_versions_decrypt_each(page) == [plaintext]


@pytest.mark.django_db
def test_a_format_1_row_with_its_wrapped_key_blanked_fails_loudly(patient, patient_user):
    _import(patient, 1)
    [stored] = stored_versions_current(patient=patient)
    _reseal_as_format_1(stored, decrypt.stored_version_decrypt(stored))
    ResourceVersion.objects.filter(resource__patient_id=patient.pk).update(wrapped_data_key=b"")

    [blanked] = stored_versions_current(patient=patient)
    assert blanked.wrapped_data_key == b""
    with pytest.raises(IntegrityFailure):
        decrypt.stored_version_decrypt(blanked)
    assert decrypt.stored_versions_decrypt_each([blanked]) == [None]
    with pytest.raises(IntegrityFailure):
        resource_read(
            caller=Caller(actor=patient_user), patient=patient, resource_type="Observation", resource_id=stored.fhir_id
        )


@pytest.mark.django_db
def test_a_page_mixing_both_formats_opens_in_one_batch_and_a_tampered_row_fails_alone(patient):
    _import(patient, 4)
    stored = stored_versions_current(patient=patient)
    plaintexts = decrypt.stored_versions_decrypt_each(stored)
    assert None not in plaintexts
    assert len(set(plaintexts)) == 4
    for item, plaintext in zip(stored[::2], plaintexts[::2], strict=True):
        assert plaintext is not None
        _reseal_as_format_1(item, plaintext)

    mixed = stored_versions_current(patient=patient)
    assert [len(item.wrapped_data_key) for item in mixed] == [60, 0, 60, 0]
    assert decrypt.stored_versions_decrypt_each(mixed) == plaintexts

    last = mixed[3]
    ResourceVersion.objects.filter(resource__fhir_id=last.fhir_id).update(ciphertext=_flip(last.ciphertext, 20))
    assert decrypt.stored_versions_decrypt_each(stored_versions_current(patient=patient)) == [*plaintexts[:3], None]
