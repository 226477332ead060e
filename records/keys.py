"""Key provider: the master keyring, the blind-index key and the patient-key cache.

Nothing here is ever stored in the database. The master key comes from
HEALTHLEDGER_MASTER_KEY (comma-separated: the first wraps new keys, the others are
still accepted for unwrapping during a rotation) or from key files under KEYS_DIR:

    master.key         the current master key, created on first use
    master.next.key    present only while a rotation is in progress; new wraps use it
    master.retired-<id>.key   an old key kept aside after rotation, never loaded

Each master key has an id derived from the key itself; a wrapped patient key
records the id it was wrapped under, so a rotation interrupted at any point leaves
every patient key unwrappable by exactly one key that is still in the keyring.

A patient key is derived from two random parts: the database part, sealed under the
master key in the patient's row ("wrapped"), and the key-store part, held by the
patient key store outside the database (records.keystore). A copy of the database
with the master key opens nothing; erasure destroys the key-store part.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings

from healthledger.errors import KeyDestroyed, KeyUnavailable
from healthledger.lib.keyfiles import (
    decode_key,
    key_file_path,
    load_or_create_key,
    register_key_cache,
    write_key_file,
)
from records import crypto
from records.keystore import key_store

logger = logging.getLogger(__name__)

MASTER_FILE = "master.key"
NEXT_FILE = "master.next.key"
RETIRED_FILE = "master.retired-{key_id}.key"
INDEX_FILE = "index.key"
# Unwrapped patient keys kept in memory; small, because each entry is 32 bytes plus its wrapped form.
PATIENT_KEY_CACHE_SIZE = 4096


@dataclass(frozen=True)
class MasterKeyring:
    current_id: str
    keys: dict[str, bytes] = field(repr=False)
    from_environment: bool

    @property
    def current(self) -> bytes:
        return self.keys[self.current_id]


def master_key_id(raw: bytes) -> str:
    """A stable, non-secret name for a master key (a PRF of the key under itself, 16 hex digits)."""
    return crypto.keyed_digest(key=raw, data=b"healthledger/master-key-id", size=8).hex()


_state: dict[str, object] = {}
_patient_keys: dict[tuple[bytes, uuid.UUID, str], bytes] = {}
_log_keys: dict[uuid.UUID, bytes] = {}


def _clear() -> None:
    _state.clear()
    _patient_keys.clear()
    _log_keys.clear()


register_key_cache(_clear)


def _read_key_file(filename: str, *, name: str) -> bytes | None:
    path = key_file_path(filename)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyUnavailable(f"{name} key file cannot be read") from exc
    return decode_key(text, name=name)


def _keyring_load() -> MasterKeyring:
    env_value = settings.HEALTHLEDGER_MASTER_KEY
    if env_value:
        raws = [decode_key(part, name="HEALTHLEDGER_MASTER_KEY") for part in env_value.split(",") if part.strip()]
        keys = {master_key_id(raw): raw for raw in raws}
        return MasterKeyring(current_id=master_key_id(raws[0]), keys=keys, from_environment=True)
    master = load_or_create_key(env_value="", filename=MASTER_FILE, name="master key")
    keys = {master_key_id(master): master}
    current = master
    pending = _read_key_file(NEXT_FILE, name="next master key")
    if pending is not None:
        # A rotation is in progress: wrap with the new key so nothing new depends on the old one.
        keys[master_key_id(pending)] = pending
        current = pending
    return MasterKeyring(current_id=master_key_id(current), keys=keys, from_environment=False)


def master_keyring(*, refresh: bool = False) -> MasterKeyring:
    """The master keyring, cached in memory; `refresh` re-reads the environment and key files."""
    ring = _state.get("master")
    if refresh or not isinstance(ring, MasterKeyring):
        ring = _keyring_load()
        _state["master"] = ring
    return ring


def index_key() -> bytes:
    """The key of the blind index (HEALTHLEDGER_INDEX_KEY or var/keys/index.key)."""
    key = _state.get("index")
    if not isinstance(key, bytes):
        raw = load_or_create_key(env_value=settings.HEALTHLEDGER_INDEX_KEY, filename=INDEX_FILE, name="index key")
        key = crypto.subkey_derive(key=raw, purpose=b"healthledger/blind-index")
        _state["index"] = key
    return key


def _patient_key_aad(patient_id: uuid.UUID, key_id: str) -> bytes:
    return b"healthledger/patient-key|" + patient_id.bytes + b"|" + key_id.encode("ascii")


def patient_key_wrap(*, patient_id: uuid.UUID, key: bytes, keyring: MasterKeyring | None = None) -> tuple[bytes, str]:
    """Wrap a patient key under the current master key; returns (wrapped, master key id).

    Reads the key files afresh by default: wrapping is rare, and a process that
    started before a rotation must not wrap new keys under the key being retired.
    """
    ring = keyring or master_keyring(refresh=True)
    wrapped = crypto.aead_seal(key=ring.current, plaintext=key, aad=_patient_key_aad(patient_id, ring.current_id))
    return wrapped, ring.current_id


def patient_key_new(*, patient_id: uuid.UUID) -> tuple[bytes, str]:
    """A fresh patient key: its key-store part stored, its database part wrapped: (wrapped, master key id)."""
    key_store().part_create(patient_id=patient_id)
    return patient_key_wrap(patient_id=patient_id, key=crypto.key_generate())


def _combine(*, database_part: bytes, store_part: bytes) -> bytes:
    # HMAC as a PRF keyed by the key-store part over the database part: either part alone
    # says nothing about the result.
    return crypto.keyed_digest(key=store_part, data=b"healthledger/patient-key|" + database_part)


def patient_key_part_unwrap(*, patient_id: uuid.UUID, wrapped: bytes, master_key_id: str) -> bytes:
    """The database part of a patient key, unwrapped with the master key (for rewrapping on rotation)."""
    ring = master_keyring()
    master = ring.keys.get(master_key_id)
    if master is None:
        # Another process may have rotated: look at the key files once more before failing.
        master = master_keyring(refresh=True).keys.get(master_key_id)
    if master is None:
        raise KeyUnavailable(f"master key {master_key_id} is not in the keyring (wrong or missing master key)")
    return crypto.aead_open(key=master, sealed=bytes(wrapped), aad=_patient_key_aad(patient_id, master_key_id))


def patient_key_unwrap(*, patient_id: uuid.UUID, wrapped: bytes, master_key_id: str) -> bytes:
    """The patient key. Cached by the wrapped bytes, so an erased or rewrapped key is never served stale.

    The cache key also carries everything the wrapping's associated data binds (patient,
    master key id): a wrapped key copied to another row must fail here as it would uncached.
    KeyDestroyed when the key store no longer holds the patient's part (erased).
    """
    wrapped = bytes(wrapped)
    cache_key = (wrapped, patient_id, master_key_id)
    cached = _patient_keys.get(cache_key)
    if cached is not None:
        return cached
    database_part = patient_key_part_unwrap(patient_id=patient_id, wrapped=wrapped, master_key_id=master_key_id)
    store_part = key_store().part_get(patient_id=patient_id)
    if store_part is None:
        raise KeyDestroyed("this patient's key is gone from the key store: the record was erased")
    key = _combine(database_part=database_part, store_part=store_part)
    if len(_patient_keys) >= PATIENT_KEY_CACHE_SIZE:
        _patient_keys.clear()
    _patient_keys[cache_key] = key
    return key


def patient_keys_prefetch(*, wrapped: Sequence[tuple[uuid.UUID, bytes, str]]) -> None:
    """Derive and cache the patient keys and log keys of several records (patient id, wrapped key, master key id)
    with one key-store call, so a research chunk's decryption and logging find them cached instead of opening
    the key store once or twice per record. An erased record's part is absent: its read still raises KeyDestroyed.
    """
    missing = [(pid, bytes(w), kid) for pid, w, kid in wrapped if (bytes(w), pid, kid) not in _patient_keys]
    missing_log = {pid for pid, _, _ in wrapped if pid not in _log_keys}
    if not missing and not missing_log:
        return
    parts = key_store().parts_get(patient_ids=[pid for pid, _, _ in missing] + sorted(missing_log))
    if len(_patient_keys) + len(missing) >= PATIENT_KEY_CACHE_SIZE:
        _patient_keys.clear()
    if len(_log_keys) + len(missing_log) >= PATIENT_KEY_CACHE_SIZE:
        _log_keys.clear()
    for pid, wrapped_key, key_id in missing:
        if pid in parts:
            database_part = patient_key_part_unwrap(patient_id=pid, wrapped=wrapped_key, master_key_id=key_id)
            _patient_keys[(wrapped_key, pid, key_id)] = _combine(database_part=database_part, store_part=parts[pid])
    for pid in missing_log:
        if pid in parts:
            _log_keys[pid] = _log_key_derive(parts[pid])


def patient_key_forget(*, wrapped: bytes) -> None:
    """Drop an unwrapped key from this process's cache (erasure: the key must not outlive its record)."""
    wrapped = bytes(wrapped)
    for cache_key in [k for k in _patient_keys if k[0] == wrapped]:
        del _patient_keys[cache_key]


def _log_key_derive(part: bytes) -> bytes:
    return crypto.subkey_derive(key=part, purpose=b"healthledger/log-text")


def patient_log_key(*, patient_id: uuid.UUID) -> bytes | None:
    """The key that seals what the access log says about a patient in words (queries, reasons); None once erased.

    Derived from the key-store part alone: no database read on the logging path, no copy of
    the database holds it, and erasure destroys it with the patient's key.
    """
    cached = _log_keys.get(patient_id)
    if cached is not None:
        return cached
    part = key_store().part_get(patient_id=patient_id)
    if part is None:
        return None
    key = _log_key_derive(part)
    if len(_log_keys) >= PATIENT_KEY_CACHE_SIZE:
        _log_keys.clear()
    _log_keys[patient_id] = key
    return key


def patient_key_destroy(*, patient_id: uuid.UUID) -> bool:
    """Erase a patient key for good: delete its key-store part and every cached copy; True if a part was deleted."""
    for cache_key in [k for k in _patient_keys if k[1] == patient_id]:
        del _patient_keys[cache_key]
    _log_keys.pop(patient_id, None)
    return key_store().part_destroy(patient_id=patient_id)


def master_key_rotation_begin() -> MasterKeyring:
    """Make sure a new master key exists and is the one new wraps use; returns the fresh keyring.

    With key files, the new key is written to master.next.key first (crash-safe:
    until the rewrap commits, both keys are in the keyring). With the environment,
    the operator has already put the new key first in HEALTHLEDGER_MASTER_KEY.
    """
    if not settings.HEALTHLEDGER_MASTER_KEY:
        master_keyring(refresh=True)  # creates master.key on a first run
        path = key_file_path(NEXT_FILE)
        if not path.exists():
            with contextlib.suppress(FileExistsError):  # a concurrent rotation wrote it first; use theirs
                write_key_file(path, crypto.key_generate())
    return master_keyring(refresh=True)


def master_key_rotation_finish(*, keyring: MasterKeyring) -> list[str]:
    """Retire every key but the current one; returns the retired key ids.

    Called only after no patient key is wrapped under the others. The old key is
    copied aside before master.next.key replaces master.key, so a crash between the
    two steps leaves the rotation still "in progress" rather than losing a key.
    """
    retired = [key_id for key_id in keyring.keys if key_id != keyring.current_id]
    if keyring.from_environment:
        _clear()
        return retired
    for key_id in retired:
        aside = key_file_path(RETIRED_FILE.format(key_id=key_id))
        if not aside.exists():
            write_key_file(aside, keyring.keys[key_id])
    next_path = key_file_path(NEXT_FILE)
    if next_path.exists():
        os.replace(next_path, key_file_path(MASTER_FILE))
    _clear()
    logger.info("master key rotation finished: current key %s, retired %s", keyring.current_id, retired)
    return retired
