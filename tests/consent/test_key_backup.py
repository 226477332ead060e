"""The server-held backup of the patient's key: ciphertext made in the browser, which the server cannot open.

node seals a key with portal/static_src/key_backup.mjs (the module the key bundle is built from); the stored row
holds no key, and Python opens it only with the right passphrase, the right record and the right address, which
proves the format: scrypt(passphrase NFKC, salt, N, r, p) -> AES-256-GCM(nonce, key, record id and address).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import unicodedata
import uuid

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account
from eth_account.messages import encode_typed_data

from audit.models import AccessLogEntry
from consent.key_backup import (
    InvalidKeyBackup,
    KeyBackupStale,
    backup_associated_data,
    backup_blob_parse,
    key_backup_delete,
    key_backup_for_restore,
    key_backup_status,
    key_backup_store,
)
from consent.keys import patient_key_register, registration_typed_data
from consent.models import KeyBackup
from healthledger.errors import ConsentDenied
from ledger import signing
from records.models import Patient
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.django_db

SCRIPT = REPO_ROOT / "portal" / "static_src" / "key_backup_seal.mjs"
BACKUP_PASSPHRASE = "Ünïcode backup passphrase, long enough"


def _node(request: dict[str, object]) -> dict[str, object]:
    node = shutil.which("node")
    if node is None or not (REPO_ROOT / "node_modules" / "@noble" / "hashes").exists():
        pytest.skip("node and the npm packages are needed: npm install")
    out = subprocess.run(
        [node, str(SCRIPT)], input=json.dumps(request), capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout)


def browser_seal(patient: Patient, key: bytes, passphrase: str = BACKUP_PASSPHRASE) -> dict[str, object]:
    """What the key page uploads when she turns the backup on."""
    address = signing.patient_address(private_key=key)
    return _node(
        {
            "op": "seal",
            "private_key": "0x" + key.hex(),
            "passphrase": passphrase,
            "record": str(patient.pk),
            "address": address,
        }
    )


def python_open(row: KeyBackup, passphrase: str, *, record: object, address: str | None = None) -> bytes:
    """The format, written out independently of the JavaScript."""
    kdf = row.kdf
    derived = hashlib.scrypt(
        unicodedata.normalize("NFKC", passphrase).encode(),
        salt=bytes(row.salt),
        n=kdf["N"],
        r=kdf["r"],
        p=kdf["p"],
        dklen=kdf["dkLen"],
        maxmem=2**28,
    )
    aad = f"healthledger/key-backup/v1|{record}|{(address or row.address).lower()}".encode()
    return AESGCM(derived).decrypt(bytes(row.nonce), bytes(row.ciphertext), aad)


def holds_key(patient: Patient, key: bytes) -> str:
    """Her browser holds this key and it is registered for her (browser custody), as after "Create my key"."""
    address = signing.patient_address(private_key=key)
    Patient.objects.filter(pk=patient.pk).update(wallet_address=address, wallet_ciphertext=None)
    patient.refresh_from_db()
    return address


def _sign(typed: dict[str, object], key: bytes) -> str:
    wire = json.loads(json.dumps(signing.typed_data_json(typed)))
    return "0x" + bytes(Account.sign_message(encode_typed_data(full_message=wire), private_key=key).signature).hex()


def test_the_stored_backup_holds_no_key_and_opens_only_with_her_passphrase(patient, patient_user):
    key = secrets.token_bytes(32)
    address = holds_key(patient, key)

    key_backup_store(patient=patient, by=patient_user, blob=backup_blob_parse(browser_seal(patient, key)))

    row = KeyBackup.objects.get(patient=patient)
    stored = b"".join([bytes(row.salt), bytes(row.nonce), bytes(row.ciphertext), json.dumps(row.kdf).encode()])
    assert key not in stored
    assert key.hex().encode() not in stored
    assert BACKUP_PASSPHRASE.encode() not in stored
    assert (row.address, row.kdf) == (address, {"name": "scrypt", "N": 2**17, "r": 8, "p": 1, "dkLen": 32})
    assert (len(bytes(row.salt)), len(bytes(row.nonce)), len(bytes(row.ciphertext))) == (16, 12, 48)
    assert python_open(row, BACKUP_PASSPHRASE, record=patient.pk) == key
    assert backup_associated_data(patient=patient, address=address) == (
        f"healthledger/key-backup/v1|{patient.pk}|{address.lower()}".encode()
    )
    with pytest.raises(InvalidTag):
        python_open(row, BACKUP_PASSPHRASE + "!", record=patient.pk)
    with pytest.raises(InvalidTag):  # moved to another record
        python_open(row, BACKUP_PASSPHRASE, record=uuid.uuid4())
    with pytest.raises(InvalidTag):  # relabelled with another key's address
        python_open(row, BACKUP_PASSPHRASE, record=patient.pk, address=signing.patient_address(private_key=key[::-1]))


def test_the_page_opens_what_the_server_hands_back_and_names_a_wrong_passphrase(patient, patient_user):
    key = secrets.token_bytes(32)
    holds_key(patient, key)
    key_backup_store(patient=patient, by=patient_user, blob=backup_blob_parse(browser_seal(patient, key)))
    handed = key_backup_for_restore(patient=patient, by=patient_user)
    assert handed is not None
    blob = json.loads(json.dumps(handed.as_json()))  # over the wire

    right = _node({"op": "open", "blob": blob, "passphrase": BACKUP_PASSPHRASE, "record": str(patient.pk)})
    wrong = _node({"op": "open", "blob": blob, "passphrase": "not my backup passphrase", "record": str(patient.pk)})

    assert right == {"private_key": "0x" + key.hex()}
    assert wrong == {"error": "That backup passphrase does not open your server backup. Check it and try again."}


def test_uploads_store_fetches_and_deletes_are_logged_without_any_secret(patient, patient_user):
    key = secrets.token_bytes(32)
    holds_key(patient, key)
    blob = backup_blob_parse(browser_seal(patient, key))

    key_backup_store(patient=patient, by=patient_user, blob=blob)
    key_backup_for_restore(patient=patient, by=patient_user)
    assert key_backup_delete(patient=patient, by=patient_user) is True
    assert key_backup_delete(patient=patient, by=patient_user) is False

    entries = list(AccessLogEntry.objects.filter(patient_ref=patient.pk, action__startswith="consent.key.backup"))
    assert [e.action for e in entries] == [
        "consent.key.backup.store",
        "consent.key.backup.fetch",
        "consent.key.backup.delete",
    ]
    assert {e.actor for e in entries} == {f"user:{patient_user.pk}"}
    for entry in entries:
        text = json.dumps({f.attname: str(getattr(entry, f.attname)) for f in entry._meta.concrete_fields})
        for secret in (blob.ciphertext.hex(), blob.salt.hex(), blob.nonce.hex(), key.hex(), blob.address.lower()[2:]):
            assert secret not in text.lower()
    assert not KeyBackup.objects.filter(patient=patient).exists()


def _random_blob(owner: str, **changes: object) -> dict[str, object]:
    blob: dict[str, object] = {
        "version": 1,
        "address": owner,
        "kdf": {"name": "scrypt", "N": 2**17, "r": 8, "p": 1, "dkLen": 32},
        "salt": "0x" + secrets.token_hex(16),
        "nonce": "0x" + secrets.token_hex(12),
        "ciphertext": "0x" + secrets.token_hex(48),
    }
    blob.update(changes)
    return blob


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ciphertext": "0x" + "00" * 80}, "the backup's ciphertext must be 48 bytes"),
        ({"ciphertext": "0xzz"}, "the backup's ciphertext is not hex"),
        ({"salt": "0x" + "00" * 8}, "the backup's salt must be 16 bytes"),
        ({"kdf": {"name": "pbkdf2"}}, "the backup's key derivation must be scrypt"),
        ({"kdf": {"name": "scrypt", "N": 2**30, "r": 8, "p": 1, "dkLen": 32}}, "scrypt N must be a power of two"),
        ({"kdf": {"name": "scrypt", "N": 2**17, "r": 1, "p": 1, "dkLen": 32}}, "must be r=8, p=1, dkLen=32"),
        ({"version": 2}, "unknown backup version"),
        ({"address": "0x1234"}, "not an Ethereum address"),
    ],
)
def test_an_upload_not_shaped_as_the_browser_makes_it_is_refused(change, message):
    with pytest.raises(InvalidKeyBackup, match=message):
        backup_blob_parse(_random_blob(signing.patient_address(private_key=secrets.token_bytes(32)), **change))


def test_only_the_key_registered_for_her_today_and_held_in_her_browser_is_backed_up(
    patient, patient_user, other_patient
):
    key = secrets.token_bytes(32)
    server_held = signing.patient_address(private_key=key)
    Patient.objects.filter(pk=patient.pk).update(wallet_address=server_held, wallet_ciphertext=b"sealed")

    with pytest.raises(InvalidKeyBackup):  # the operator still holds it: take it first
        key_backup_store(patient=patient, by=patient_user, blob=backup_blob_parse(_random_blob(server_held)))
    holds_key(patient, key)
    stranger = signing.patient_address(private_key=secrets.token_bytes(32))
    with pytest.raises(InvalidKeyBackup):
        key_backup_store(patient=patient, by=patient_user, blob=backup_blob_parse(_random_blob(stranger)))
    with pytest.raises(ConsentDenied):  # another patient, about Alice's record
        key_backup_store(patient=patient, by=other_patient.user, blob=backup_blob_parse(_random_blob(server_held)))
    with pytest.raises(ConsentDenied):
        key_backup_for_restore(patient=patient, by=other_patient.user)
    with pytest.raises(ConsentDenied):
        key_backup_delete(patient=patient, by=other_patient.user)

    assert not KeyBackup.objects.exists()
    assert key_backup_status(patient=patient) == "none"


def test_a_second_backup_replaces_the_first(patient, patient_user):
    address = holds_key(patient, secrets.token_bytes(32))
    first, second = _random_blob(address), _random_blob(address)

    key_backup_store(patient=patient, by=patient_user, blob=backup_blob_parse(first))
    key_backup_store(patient=patient, by=patient_user, blob=backup_blob_parse(second))

    [row] = KeyBackup.objects.filter(patient=patient)
    assert "0x" + bytes(row.ciphertext).hex() == second["ciphertext"]


def test_a_rotation_makes_the_backup_stale_and_it_is_never_handed_out_again(patient, patient_user, deployed):
    Patient.objects.filter(pk=patient.pk).update(wallet_address="", wallet_ciphertext=None)  # a new patient
    old_key, new_key = secrets.token_bytes(32), secrets.token_bytes(32)
    old, new = signing.patient_address(private_key=old_key), signing.patient_address(private_key=new_key)
    patient_key_register(
        patient=patient,
        by=patient_user,
        address=old,
        signature=_sign(registration_typed_data(patient=patient, key=old), old_key),
    )
    key_backup_store(patient=patient, by=patient_user, blob=backup_blob_parse(_random_blob(old)))
    assert key_backup_status(patient=patient) == "current"

    rotation = registration_typed_data(patient=patient, key=new, previous=old)
    patient_key_register(
        patient=patient,
        by=patient_user,
        address=new,
        signature=_sign(rotation, new_key),
        previous_signature=_sign(rotation, old_key),
    )

    assert key_backup_status(patient=patient) == "stale"
    with pytest.raises(KeyBackupStale) as stale:
        key_backup_for_restore(patient=patient, by=patient_user)
    assert stale.value.status == 409
    assert "no longer registered" in str(stale.value)
    assert not AccessLogEntry.objects.filter(action="consent.key.backup.fetch").exists()


def test_erasure_deletes_her_key_backup_with_the_record(patient, patient_user):
    from consent.services import patient_record_erase

    address = holds_key(patient, secrets.token_bytes(32))
    key_backup_store(patient=patient, by=patient_user, blob=backup_blob_parse(_random_blob(address)))
    assert KeyBackup.objects.filter(patient=patient).exists()

    patient_record_erase(patient=patient, actor=f"user:{patient_user.pk}", revocation_signatures={})

    assert not KeyBackup.objects.filter(patient=patient).exists()
