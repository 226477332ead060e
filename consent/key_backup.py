"""The optional server-held backup of the patient's signing key: the server stores ciphertext it cannot open.

Her browser (portal/static_src/key_backup.mjs) derives an AES-256-GCM key from a backup passphrase with scrypt,
seals her 32-byte private key under it with a fresh salt and nonce, binds the record id and the key's address
as associated data (`backup_associated_data`), and uploads only the ciphertext and the KDF parameters. Neither
the key nor the passphrase ever reaches the server, so the server (and anyone with its database) can only guess
passphrases offline: the passphrase's strength and scrypt's cost are the whole protection, as the key page says.

One current backup per record. It names the address it holds; a rotation or a reset registers another address,
and from then on the backup is stale: shown as such, never handed out for a restore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from django.db import transaction

from accounts.models import User
from audit.services import LogEvent, access_log_append
from consent.keys import patient_key_custody, patient_key_owner_check
from consent.models import KeyBackup
from healthledger.errors import HealthLedgerError
from ledger import signing
from records.models import Patient

__all__ = [
    "BACKUP_VERSION",
    "BackupBlob",
    "InvalidKeyBackup",
    "KeyBackupStale",
    "backup_associated_data",
    "backup_blob_parse",
    "key_backup_delete",
    "key_backup_for_restore",
    "key_backup_status",
    "key_backup_store",
]

BACKUP_VERSION = 1
KEY_BYTES, TAG_BYTES, SALT_BYTES, NONCE_BYTES = 32, 16, 16, 12
# scrypt costs a browser may be asked to pay to open a backup: enough to slow offline guessing, bounded so that
# a backup cannot make a restore run out of memory.
SCRYPT_LOG2_N = range(15, 21)
SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 8, 1, 32

Status = Literal["none", "current", "stale"]


class InvalidKeyBackup(HealthLedgerError):
    """A key backup upload that is not the shape the browser makes, or names a key that is not hers today."""


@dataclass
class KeyBackupStale(HealthLedgerError):
    """The backup holds a key that a rotation or a reset replaced: it must not be restored."""

    status: int = field(default=409, kw_only=True)


@dataclass(frozen=True)
class BackupBlob:
    """What the browser uploads and a restore downloads: ciphertext and the parameters to re-derive its key."""

    address: str
    kdf: dict[str, object]
    salt: bytes
    nonce: bytes
    ciphertext: bytes

    def as_json(self) -> dict[str, object]:
        return {
            "version": BACKUP_VERSION,
            "address": self.address,
            "kdf": self.kdf,
            "salt": "0x" + self.salt.hex(),
            "nonce": "0x" + self.nonce.hex(),
            "ciphertext": "0x" + self.ciphertext.hex(),
        }


def backup_associated_data(*, patient: Patient, address: str) -> bytes:
    """The AES-GCM associated data: a backup moved to another record or relabelled with another key fails to open."""
    return f"healthledger/key-backup/v{BACKUP_VERSION}|{patient.pk}|{address.lower()}".encode()


def _hex(value: object, size: int, what: str) -> bytes:
    text = value if isinstance(value, str) else ""
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise InvalidKeyBackup(f"the backup's {what} is not hex") from None
    if len(raw) != size:
        raise InvalidKeyBackup(f"the backup's {what} must be {size} bytes")
    return raw


def _kdf(value: object) -> dict[str, object]:
    if not isinstance(value, dict) or value.get("name") != "scrypt":
        raise InvalidKeyBackup("the backup's key derivation must be scrypt")
    n, r, p, dk_len = (value.get(k) for k in ("N", "r", "p", "dkLen"))
    if not (isinstance(n, int) and n > 0 and (n & (n - 1)) == 0 and n.bit_length() - 1 in SCRYPT_LOG2_N):
        raise InvalidKeyBackup("the backup's scrypt N must be a power of two from 2^15 to 2^20")
    if (r, p, dk_len) != (SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN):
        raise InvalidKeyBackup("the backup's scrypt parameters must be r=8, p=1, dkLen=32")
    return {"name": "scrypt", "N": n, "r": r, "p": p, "dkLen": dk_len}


def backup_blob_parse(fields: dict[str, object]) -> BackupBlob:
    """The upload as the browser sends it (hex strings, the KDF parameters as an object), checked for shape only:
    what is inside the ciphertext the server cannot know."""
    if fields.get("version") not in (BACKUP_VERSION, str(BACKUP_VERSION)):
        raise InvalidKeyBackup(f"unknown backup version (this server reads version {BACKUP_VERSION})")
    try:
        address = signing.address_checked(str(fields.get("address", "")))
    except signing.BadSignature:
        raise InvalidKeyBackup("the backup's address is not an Ethereum address") from None
    return BackupBlob(
        address=address,
        kdf=_kdf(fields.get("kdf")),
        salt=_hex(fields.get("salt"), SALT_BYTES, "salt"),
        nonce=_hex(fields.get("nonce"), NONCE_BYTES, "nonce"),
        ciphertext=_hex(fields.get("ciphertext"), KEY_BYTES + TAG_BYTES, "ciphertext"),
    )


def _log(*, by: User, action: str, patient: Patient) -> None:
    # Who and what only: never the ciphertext, the salt or the address.
    access_log_append(event=LogEvent(actor=f"user:{by.pk}", action=action, outcome="permit", patient_ref=patient.pk))


def key_backup_status(*, patient: Patient) -> Status:
    """ "none", "current" (it holds the key registered today) or "stale" (a rotation or reset replaced that key)."""
    backup = KeyBackup.objects.filter(patient=patient).only("address").first()
    if backup is None:
        return "none"
    current = Patient.objects.values_list("wallet_address", flat=True).get(pk=patient.pk)
    return "current" if backup.address == current else "stale"


def key_backup_store(*, patient: Patient, by: User, blob: BackupBlob) -> KeyBackup:
    """Keep the browser's sealed copy of her registered key, replacing any earlier backup; logged."""
    patient_key_owner_check(patient, by)
    with transaction.atomic():
        # Locks the record: a rotation committing now must not leave a fresh backup of the key it replaced.
        locked = Patient.objects.select_for_update().get(pk=patient.pk)
        if patient_key_custody(locked) != "browser" or locked.wallet_address != blob.address:
            raise InvalidKeyBackup("only the key registered for you today, held in your browser, can be backed up")
        KeyBackup.objects.filter(patient=locked).delete()
        backup = KeyBackup.objects.create(
            patient=locked,
            address=blob.address,
            kdf=blob.kdf,
            salt=blob.salt,
            nonce=blob.nonce,
            ciphertext=blob.ciphertext,
        )
        _log(by=by, action="consent.key.backup.store", patient=locked)
    return backup


def key_backup_for_restore(*, patient: Patient, by: User) -> BackupBlob | None:
    """The backup, for her browser to open with her passphrase; None when there is none. A stale one is refused
    (KeyBackupStale): the key it holds can no longer sign for her. Each hand-out is logged."""
    patient_key_owner_check(patient, by)
    with transaction.atomic():
        backup = KeyBackup.objects.filter(patient=patient).first()
        if backup is None:
            return None
        if key_backup_status(patient=patient) != "current":
            raise KeyBackupStale(
                "your server backup holds a key that is no longer registered for you (it was replaced by a "
                "rotation or a reset), so it cannot be restored; delete it and back up your current key"
            )
        _log(by=by, action="consent.key.backup.fetch", patient=patient)
        return BackupBlob(
            address=backup.address,
            kdf=dict(backup.kdf),
            salt=bytes(backup.salt),
            nonce=bytes(backup.nonce),
            ciphertext=bytes(backup.ciphertext),
        )


def key_backup_delete(*, patient: Patient, by: User) -> bool:
    """Delete her server backup; False when there was none. Logged when one was deleted."""
    patient_key_owner_check(patient, by)
    with transaction.atomic():
        deleted, _ = KeyBackup.objects.filter(patient=patient).delete()
        if deleted:
            _log(by=by, action="consent.key.backup.delete", patient=patient)
    return bool(deleted)
