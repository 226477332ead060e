"""The AES-256-GCM seam: the only module that calls the cipher.

A sealed blob is nonce (12 bytes) || ciphertext || tag (16 bytes). Every nonce is
96 bits fresh from the OS random source, so a key keeps GCM's guarantees while it
seals fewer than 2**32 blobs. The busiest keys are a patient's: their content subkey
seals one blob per version stored in their record (records.envelope, format 2), and
their key itself sealed one wrapped data key per format-1 version, besides their
wallet. A record would need four billion versions to come near the bound.
Any authentication failure (flipped byte, wrong key, wrong associated data) raises
IntegrityFailure: there is no way to get unauthenticated plaintext out of here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from healthledger.errors import IntegrityFailure

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def key_generate() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def aead_seal(*, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate `plaintext`, binding `aad`; returns nonce || ciphertext || tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(*, key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Authenticate and decrypt a blob from aead_seal; IntegrityFailure if anything does not match."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise IntegrityFailure("ciphertext is truncated")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise IntegrityFailure("ciphertext failed authentication (tampered, moved, or the wrong key)") from exc


class AeadKey:
    """Blobs and envelopes opened under one key: the cipher's key schedule is set up once."""

    def __init__(self, key: bytes) -> None:
        self._cipher = AESGCM(key)

    def open(self, *, sealed: bytes, aad: bytes) -> bytes:
        """aead_open under this key, without a key schedule per blob: a search page opens a hundred."""
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise IntegrityFailure("ciphertext is truncated")
        try:
            return self._cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise IntegrityFailure("ciphertext failed authentication (tampered, moved, or the wrong key)") from exc

    def open_each_checked(
        self, head: KeyedDigester, items: Iterable[tuple[bytes | None, bytes, bytes | None, bytes]]
    ) -> list[bytes | None]:
        """open of many (sealed, aad, head message, head MAC) items, each opened only if its MAC checks first.

        An item's head message (None: nothing to check) must have `head`'s digest equal to its head MAC,
        compared in constant time; an item that fails that, or whose blob fails to open, gives None (it
        fails alone), and so does one whose sealed blob is None (left for the caller to open otherwise).
        The same checks as head(message) then open(...) item by item, in one loop: a search page's hundred
        versions each cost a MAC and a decrypt, without building a list between the two.
        """
        decrypt, compare = self._cipher.decrypt, hmac.compare_digest
        opened: list[bytes | None] = []
        append = opened.append
        for sealed, aad, message, mac in items:
            if message is not None and not compare(mac, head(message)):
                append(None)
                continue
            if sealed is None or len(sealed) < NONCE_BYTES + TAG_BYTES:
                append(None)
                continue
            try:
                append(decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad))
            except InvalidTag:
                append(None)
        return opened

    def open_enveloped(self, *, wrapped: bytes, wrapped_aad: bytes, sealed: bytes, aad: bytes) -> bytes:
        """Open a data key wrapped under this key, then the blob sealed under that data key: one envelope.

        aead_open under this key, then under the data key it gave, in one call: the older envelope of
        records.envelope, still opened a hundred to a search page where a record has kept it.
        """
        if len(wrapped) < NONCE_BYTES + TAG_BYTES or len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise IntegrityFailure("ciphertext is truncated")
        try:
            data_key = self._cipher.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], wrapped_aad)
            return AESGCM(data_key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise IntegrityFailure("ciphertext failed authentication (tampered, moved, or the wrong key)") from exc


def subkey_derive(*, key: bytes, purpose: bytes) -> bytes:
    """A 256-bit key for one purpose derived from `key` (HMAC-SHA256 as a PRF, HKDF-expand with one block)."""
    return hmac.new(key, purpose + b"\x01", hashlib.sha256).digest()


def keyed_digest(*, key: bytes, data: bytes, size: int = 32) -> bytes:
    """HMAC-SHA256 of `data`, truncated to `size` bytes: blind-index tokens and content hashes."""
    return hmac.new(key, data, hashlib.sha256).digest()[:size]


class KeyedDigester:
    """keyed_digest for many messages under one key: HMAC-SHA256 with its keyed inner and outer states made once.

    The same HMAC (RFC 2104) as keyed_digest, built from hashlib's states: each message then costs two
    state copies and two short hashes, without the hmac module's per-call objects (a search page
    checks a hundred head MACs, ingest hashes every resource).
    """

    _BLOCK = 64  # SHA-256's block size

    def __init__(self, key: bytes, *, size: int = 32) -> None:
        if len(key) > self._BLOCK:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(self._BLOCK, b"\0")
        self._inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))
        self._size = size

    def __call__(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[: self._size]


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
