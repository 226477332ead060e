"""Secrets that guard sign-in, kept useless to whoever holds a copy of the database.

One account key (HEALTHLEDGER_ACCOUNT_KEY, else var/keys/account.key) never stored in the
database; two subkeys derived from it by purpose:

- session ids are stored only as a keyed hash, so a copied sessions table yields no cookie
  that opens a live session (session_id_digest);
- TOTP seeds are stored sealed with AES-256-GCM, bound to their user, so a copied
  devices table yields no second factor (totp_seed_seal / totp_seed_open).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from healthledger.errors import IntegrityFailure
from healthledger.lib.keyfiles import load_or_create_key, register_key_cache

KEY_FILENAME = "account.key"
SEALED_PREFIX = "s1."
NONCE_BYTES = 12
# A session key's stored form: 160 bits of HMAC-SHA256 in hex fit Django's 40-character column.
SESSION_DIGEST_HEX = 40


@functools.cache
def _subkey(purpose: bytes) -> bytes:
    raw = load_or_create_key(env_value=settings.HEALTHLEDGER_ACCOUNT_KEY, filename=KEY_FILENAME, name="account key")
    return hmac.new(raw, b"healthledger/account/" + purpose, hashlib.sha256).digest()


register_key_cache(_subkey.cache_clear)


def session_id_digest(session_key: str) -> str:
    """The form a session id is stored in: a keyed hash, from which the cookie cannot be rebuilt."""
    digest = hmac.new(_subkey(b"session-id"), session_key.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:SESSION_DIGEST_HEX]


def _seed_context(user_id: int) -> bytes:
    # Bound to the user: a sealed seed copied onto another user's device does not open.
    return f"totp-seed:user:{user_id}".encode("ascii")


def totp_seed_seal(*, seed: bytes, user_id: int) -> str:
    """A TOTP seed sealed for storage: "s1." and base64url(nonce | ciphertext | tag), 67 characters for 20 bytes."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(_subkey(b"totp-seed")).encrypt(nonce, seed, _seed_context(user_id))
    return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")


def totp_seed_open(*, sealed: str, user_id: int) -> bytes:
    """The seed from its sealed form; IntegrityFailure when it is not sealed, altered, moved or under another key."""
    if not sealed.startswith(SEALED_PREFIX):
        raise IntegrityFailure("a TOTP seed is stored unsealed")
    body = sealed[len(SEALED_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise IntegrityFailure("a sealed TOTP seed is malformed") from exc
    try:
        return AESGCM(_subkey(b"totp-seed")).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _seed_context(user_id))
    except (InvalidTag, ValueError) as exc:
        raise IntegrityFailure("a sealed TOTP seed does not open") from exc


def totp_seed_is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX)
