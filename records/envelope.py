"""Sealing and opening one resource version: the envelope both ingest and reads agree on.

Two formats, told apart by the row's wrapped data key, and both opened for as long as rows
of either exist (rows keep the format they were written in):

- format 2 (every write): no wrapped data key (b""); the content sealed under the patient's
  content subkey, derived from their key for that one purpose, so erasure shreds it with the key.
  Opening a page costs one decrypt per version under a cipher set up once (VersionOpener).
- format 1 (rows written before format 2): a fresh data key per version, sealed under the
  patient's key, and the content sealed under the data key: an unwrap and a key schedule
  per version on top of the decrypt.

The associated data names the row (patient, type, id, version), for the content and for a
wrapped data key, under a label per format and use, so a ciphertext or a wrapped data key
copied to any other row, patient or version fails authentication instead of decrypting, and
so does a format-1 row whose wrapped key is blanked (another key, another label): no format
change turns a row into plaintext without the patient's key.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from healthledger.errors import IntegrityFailure
from records import crypto

# A stored version as VersionOpener.open_each takes it: records.selectors' StoredVersion, field for field
# (patient, type, id, version, ciphertext, wrapped data key, wrapped patient key, master key, current, head MAC).
VersionRow = tuple[Any, str, str, int, bytes, bytes, Any, Any, int, bytes]

# What each key and MAC is for, prefixed to a version's associated data: one label per use.
_DATA_KEY = b"healthledger/data-key|"
_CONTENT = b"healthledger/version|"  # format 1: content under a per-version data key
_CONTENT_KEY = b"healthledger/content-key"
_CONTENT_2 = b"healthledger/version-2|"  # format 2: content under the patient's content subkey
_HEAD_KEY = b"healthledger/head"
_HEAD = b"healthledger/head|"


def version_aad(*, patient_id: uuid.UUID, resource_type: str, fhir_id: str, version: int) -> bytes:
    return _aad(f"{patient_id}|", resource_type, fhir_id, version)


def _aad(patient: str, resource_type: str, fhir_id: str, version: int) -> bytes:
    # FHIR ids and type names never contain "|", so the joined form is unambiguous.
    return f"{patient}{resource_type}|{fhir_id}|{version}".encode("ascii")


def _content_key(patient_key: bytes) -> bytes:
    return crypto.subkey_derive(key=patient_key, purpose=_CONTENT_KEY)


def version_seal(*, patient_key: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """Encrypt one version under the patient's content subkey; returns (ciphertext, wrapped data key).

    Format 2: the wrapped data key is empty, which is what marks the format (there is no data key).
    """
    return crypto.aead_seal(key=_content_key(patient_key), plaintext=plaintext, aad=_CONTENT_2 + aad), b""


def version_open(*, patient_key: bytes, aad: bytes, ciphertext: bytes, wrapped_data_key: bytes) -> bytes:
    """Authenticate and decrypt one version of either format; IntegrityFailure on any mismatch."""
    if not wrapped_data_key:
        return crypto.aead_open(key=_content_key(patient_key), sealed=ciphertext, aad=_CONTENT_2 + aad)
    data_key = crypto.aead_open(key=patient_key, sealed=wrapped_data_key, aad=_DATA_KEY + aad)
    return crypto.aead_open(key=data_key, sealed=ciphertext, aad=_CONTENT + aad)


def head_mac(*, patient_key: bytes, aad: bytes) -> bytes:
    """A MAC saying "this version is the resource's newest": kept on the resource row, checked on every current read.

    Moving the row's current_version back, or deleting the newest version and moving it back,
    leaves a MAC that names another version; nobody without the patient's key can make one
    that names the older version.
    """
    key = crypto.subkey_derive(key=patient_key, purpose=_HEAD_KEY)
    return crypto.keyed_digest(key=key, data=_HEAD + aad)


class VersionOpener:
    """version_open and head_mac for many versions of one patient: the key's derived state is made once.

    A search page opens a hundred versions under one patient key; this saves each of them the
    key schedules, the subkey derivations and the patient id's text form, and checks exactly
    what the single read does: a format-2 version then costs one decrypt.
    """

    def __init__(self, patient_key: bytes, patient_id: uuid.UUID) -> None:
        self._content = crypto.AeadKey(_content_key(patient_key))
        self._wrapping = crypto.AeadKey(patient_key)
        self._head = crypto.KeyedDigester(crypto.subkey_derive(key=patient_key, purpose=_HEAD_KEY))
        self._patient = f"{patient_id}|"

    def aad(self, *, resource_type: str, fhir_id: str, version: int) -> bytes:
        """version_aad for this opener's patient."""
        return _aad(self._patient, resource_type, fhir_id, version)

    def head_mac(self, aad: bytes) -> bytes:
        return self._head(_HEAD + aad)

    def open(self, *, aad: bytes, ciphertext: bytes, wrapped_data_key: bytes) -> bytes:
        if not wrapped_data_key:
            return self._content.open(sealed=ciphertext, aad=_CONTENT_2 + aad)
        return self._wrapping.open_enveloped(
            wrapped=wrapped_data_key, wrapped_aad=_DATA_KEY + aad, sealed=ciphertext, aad=_CONTENT + aad
        )

    def open_each(self, items: Iterable[VersionRow]) -> list[bytes | None]:
        """open, with head_mac's check of each current version, for many versions of this opener's patient.

        None for each version that fails either check (it fails alone). The same checks as aad, head_mac
        and open one version at a time: a search page's hundred format-2 versions are checked and
        decrypted in one loop (AeadKey.open_each_checked), the rarer format-1 ones one by one after it.
        """
        patient = self._patient
        work: list[tuple[bytes | None, bytes, bytes | None, bytes]] = []
        format_1: list[tuple[int, bytes, bytes, bytes, bool, bytes]] = []
        for _, resource_type, fhir_id, version, ciphertext, wrapped_data_key, _, _, current, stored_mac in items:
            aad = _aad(patient, resource_type, fhir_id, version)
            if wrapped_data_key:  # format 1: its place held (None), checked and opened after the loop
                format_1.append((len(work), aad, ciphertext, wrapped_data_key, version == current, stored_mac))
                work.append((None, b"", None, b""))
            else:
                work.append((ciphertext, _CONTENT_2 + aad, _HEAD + aad if version == current else None, stored_mac))
        opened = self._content.open_each_checked(self._head, work)
        for place, aad, ciphertext, wrapped_data_key, is_current, stored_mac in format_1:
            if is_current and not hmac.compare_digest(stored_mac, self.head_mac(aad)):
                continue  # rolled back: left None
            with suppress(IntegrityFailure):  # a failing one is left None
                opened[place] = self.open(aad=aad, ciphertext=ciphertext, wrapped_data_key=wrapped_data_key)
        return opened


def content_hash_key(patient_key: bytes) -> bytes:
    """The key of a patient's content hashes: derived from their key, so erasure shreds it too."""
    return crypto.subkey_derive(key=patient_key, purpose=b"healthledger/content-hash")


SEALED_TEXT_PREFIX = "sealed:"


def log_text_aad(*, patient_id: uuid.UUID) -> bytes:
    return f"healthledger/log-text|{patient_id}".encode("ascii")


def wallet_aad(*, patient_id: uuid.UUID) -> bytes:
    return f"healthledger/wallet|{patient_id}".encode("ascii")


def wallet_seal(*, patient_key: bytes, patient_id: uuid.UUID, private_key: bytes) -> bytes:
    """Seal a patient's chain signing key under their own key."""
    return crypto.aead_seal(key=patient_key, plaintext=private_key, aad=wallet_aad(patient_id=patient_id))


def wallet_open(*, patient_key: bytes, patient_id: uuid.UUID, sealed: bytes) -> bytes:
    return crypto.aead_open(key=patient_key, sealed=bytes(sealed), aad=wallet_aad(patient_id=patient_id))
