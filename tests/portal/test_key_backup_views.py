"""The key backup endpoints: only the record's own patient stores, fetches or deletes her backup; bad uploads get
400, a stale backup 409, and the key page says which state the backup is in."""

from __future__ import annotations

import json
import secrets

import pytest

from consent.models import KeyBackup
from ledger import signing
from records.models import Patient

pytestmark = pytest.mark.django_db

URL, DELETE_URL = "/keys/backup/", "/keys/backup/delete/"


def _holds_key(patient: Patient) -> str:
    address = signing.patient_address(private_key=secrets.token_bytes(32))
    Patient.objects.filter(pk=patient.pk).update(wallet_address=address, wallet_ciphertext=None)
    return address


def _upload(address: str, **changes: str) -> dict[str, str]:
    """The form the page posts: hex fields and the KDF parameters as JSON (the server cannot tell random bytes
    from a sealed key, so random bytes of the right size stand in for the browser's ciphertext here)."""
    fields = {
        "version": "1",
        "address": address,
        "kdf": json.dumps({"name": "scrypt", "N": 2**17, "r": 8, "p": 1, "dkLen": 32}),
        "salt": "0x" + secrets.token_hex(16),
        "nonce": "0x" + secrets.token_hex(12),
        "ciphertext": "0x" + secrets.token_hex(48),
    }
    fields.update(changes)
    return fields


def test_she_stores_fetches_and_deletes_her_backup(alice, patient):
    address = _holds_key(patient)
    upload = _upload(address)

    stored = alice.post(URL, upload)
    fetched = alice.get(URL)
    deleted = alice.post(DELETE_URL)

    assert (stored.status_code, stored.json()) == (200, {"status": "current", "address": address})
    assert fetched.status_code == 200
    assert fetched.json() == {
        "version": 1,
        "address": address,
        "kdf": {"name": "scrypt", "N": 2**17, "r": 8, "p": 1, "dkLen": 32},
        "salt": upload["salt"],
        "nonce": upload["nonce"],
        "ciphertext": upload["ciphertext"],
        "record": str(patient.pk),
    }
    assert (deleted.status_code, deleted.json()) == (200, {"deleted": True})
    assert alice.get(URL).status_code == 404


def test_her_access_log_names_each_backup_step_in_words(alice, patient):
    alice.post(URL, _upload(_holds_key(patient)))
    alice.get(URL)
    alice.post(DELETE_URL)

    page = alice.get("/access/?mine=1").content.decode()  # her own actions are listed on request

    assert "Stored an encrypted backup of your signing key (only your backup passphrase opens it)" in page
    assert "Sent your encrypted key backup to your browser, to restore your key there" in page
    assert "Deleted the encrypted backup of your signing key" in page
    assert "consent.key.backup" not in page


def test_an_anonymous_visitor_is_sent_to_sign_in_and_stores_nothing(client, patient):
    _holds_key(patient)

    assert client.get(URL).status_code == 302
    assert client.post(URL, _upload(patient.wallet_address)).status_code == 302
    assert client.post(DELETE_URL).status_code == 302
    assert not KeyBackup.objects.exists()


def test_a_clinician_gets_403_from_every_backup_endpoint(alice, carol, patient):
    address = _holds_key(patient)
    assert alice.post(URL, _upload(address)).status_code == 200

    assert carol.get(URL).status_code == 403
    assert carol.post(URL, _upload(address)).status_code == 403
    assert carol.post(DELETE_URL).status_code == 403
    assert KeyBackup.objects.get(patient=patient).address == address


def test_another_patient_never_reaches_her_backup(alice, bob, patient, other_patient):
    address = _holds_key(patient)
    _holds_key(other_patient)
    upload = _upload(address)
    assert alice.post(URL, upload).status_code == 200

    fetched = bob.get(URL)  # Bob's own (absent) backup, never Alice's
    stored = bob.post(URL, _upload(address))  # Alice's address in Bob's record
    deleted = bob.post(DELETE_URL)

    assert (fetched.status_code, fetched.json()) == (404, {"error": "you have no server backup of your key"})
    assert upload["ciphertext"][2:] not in fetched.content.decode()
    assert stored.status_code == 400
    assert (deleted.status_code, deleted.json()) == (200, {"deleted": False})
    assert list(KeyBackup.objects.values_list("patient_id", "address")) == [(patient.pk, address)]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"kdf": "{not json"}, "the backup's key derivation parameters are not JSON"),
        ({"ciphertext": "0x" + "00" * 32}, "the backup's ciphertext must be 48 bytes"),
        ({"version": "9"}, "unknown backup version (this server reads version 1)"),
    ],
)
def test_a_malformed_upload_gets_400_with_the_reason(alice, patient, change, error):
    answer = alice.post(URL, _upload(_holds_key(patient), **change))

    assert (answer.status_code, answer.json()) == (400, {"error": error})
    assert not KeyBackup.objects.exists()


def test_the_key_page_says_when_the_backup_is_on_stale_or_off(alice, patient, deployed):
    address = _holds_key(patient)
    off = alice.get("/keys/").content.decode()
    alice.post(URL, _upload(address))
    on = alice.get("/keys/").content.decode()
    _holds_key(patient)  # as a rotation or a reset would: another key is registered now
    stale_page = alice.get("/keys/").content.decode()
    stale_fetch = alice.get(URL)

    assert 'data-key-backup="none"' in off
    assert "Turn on server backup" in off
    assert 'data-key-backup="current"' in on
    assert "Restore my key from the server backup" in on
    assert "Turn on server backup" not in on
    assert 'data-key-backup="stale"' in stale_page
    assert "no longer registered for you" in stale_page
    assert "Restore my key from the server backup" not in stale_page
    assert stale_fetch.status_code == 409
    assert "no longer registered" in stale_fetch.json()["error"]
