"""The patient key store: the half of every patient key that the database never holds.

A patient's key is derived from two random 32-byte parts (records.keys):

- the database part, sealed under the master key in `records_patient.wrapped_key`;
- the key-store part, kept here, outside the database, one row per patient.

Neither part alone opens anything, so a copy of the database (a backup, a dump, a
replica) together with the master key decrypts no patient's data; erasure deletes the
patient's row here, after which no backup of the database can ever be opened.

The default store is one SQLite file under the key directory (`var/keys/patient-keys.sqlite3`,
mode 0600), opened with `secure_delete` so a deleted part is overwritten in the file,
and with a rollback journal rather than a write-ahead log, so a deleted part never
lingers in a side file. Production puts the same operations in front of a KMS or
Vault (`HEALTHLEDGER_KEY_STORE` names the store; only `file` ships today). The store's
own backups are the operator's: an erased part stays in them until they expire
(`HEALTHLEDGER_KEY_BACKUP_DAYS`, said on the erase page), and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from django.conf import settings

from healthledger.errors import KeyUnavailable
from records import crypto

FILE_NAME = "patient-keys.sqlite3"
PARTS_PER_QUERY = 500  # well under SQLite's limit on bound parameters


class KeyStore(Protocol):
    """Operations on per-patient secrets; implementations raise KeyUnavailable when they cannot answer."""

    def part_create(self, *, patient_id: uuid.UUID) -> bytes: ...

    def part_get(self, *, patient_id: uuid.UUID) -> bytes | None: ...

    def parts_get(self, *, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]: ...

    def part_destroy(self, *, patient_id: uuid.UUID) -> bool: ...


class FileKeyStore:
    """The default key store: a SQLite file of its own beside the other key files, never the database."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: calls are rare (a patient key is cached once derived), and a
        # connection opened before a worker forks must never be shared with the child.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise KeyUnavailable("the patient key store cannot be opened") from exc
        try:
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("CREATE TABLE IF NOT EXISTS part (patient_id TEXT PRIMARY KEY, secret BLOB NOT NULL)")
            yield conn
        except sqlite3.Error as exc:
            raise KeyUnavailable("the patient key store failed") from exc
        finally:
            conn.close()

    def part_create(self, *, patient_id: uuid.UUID) -> bytes:
        """A new random part for a new patient (an existing one is kept: creating twice is harmless)."""
        secret = crypto.key_generate()
        with self._connection() as conn:
            conn.execute("INSERT OR IGNORE INTO part (patient_id, secret) VALUES (?, ?)", (str(patient_id), secret))
            row = conn.execute("SELECT secret FROM part WHERE patient_id = ?", (str(patient_id),)).fetchone()
        return bytes(row[0])

    def part_get(self, *, patient_id: uuid.UUID) -> bytes | None:
        with self._connection() as conn:
            row = conn.execute("SELECT secret FROM part WHERE patient_id = ?", (str(patient_id),)).fetchone()
        return bytes(row[0]) if row is not None else None

    def parts_get(self, *, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]:
        """Several patients' parts in one connection (a research chunk's records): id -> part, erased ones absent."""
        found: dict[uuid.UUID, bytes] = {}
        wanted = [str(pid) for pid in dict.fromkeys(patient_ids)]
        with self._connection() as conn:
            for at in range(0, len(wanted), PARTS_PER_QUERY):
                batch = wanted[at : at + PARTS_PER_QUERY]
                marks = ", ".join("?" * len(batch))
                rows = conn.execute(f"SELECT patient_id, secret FROM part WHERE patient_id IN ({marks})", batch)  # noqa: S608
                found.update((uuid.UUID(pid), bytes(secret)) for pid, secret in rows.fetchall())
        return found

    def part_destroy(self, *, patient_id: uuid.UUID) -> bool:
        """Delete a patient's part for good; True if there was one."""
        with self._connection() as conn:
            deleted = conn.execute("DELETE FROM part WHERE patient_id = ?", (str(patient_id),)).rowcount
            # secure_delete zeroes the freed page; VACUUM would also drop it from the file's free list.
        return bool(deleted)


def key_store() -> KeyStore:
    """The configured key store (HEALTHLEDGER_KEY_STORE; `file`, under HEALTHLEDGER_KEY_STORE_PATH or KEYS_DIR)."""
    kind = settings.HEALTHLEDGER_KEY_STORE
    if kind != "file":
        raise KeyUnavailable(f"unknown key store {kind!r} (this build ships 'file')")
    path = settings.HEALTHLEDGER_KEY_STORE_PATH or str(Path(settings.KEYS_DIR) / FILE_NAME)
    return FileKeyStore(Path(path))
