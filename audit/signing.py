"""The access log's signing key: Ed25519, its 32-byte seed kept outside the database.

The seed comes from HEALTHLEDGER_AUDIT_KEY, else from the key file var/keys/audit.key
(created on first use). A database dump therefore cannot forge a checkpoint.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings

from healthledger.lib.keyfiles import load_or_create_key, register_key_cache

KEY_FILENAME = "audit.key"
# Domain separation: these signatures can never be replayed as some other signed message.
CHECKPOINT_DOMAIN = b"HealthLedger access-log checkpoint v1\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AuditKey:
    private: Ed25519PrivateKey
    public: Ed25519PublicKey
    fingerprint: str


def public_key_fingerprint(public: Ed25519PublicKey) -> str:
    return sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


@functools.cache
def audit_key() -> AuditKey:
    """The configured signing key (cached; tests and rotation clear the cache)."""
    seed = load_or_create_key(env_value=settings.HEALTHLEDGER_AUDIT_KEY, filename=KEY_FILENAME, name="audit key")
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key()
    return AuditKey(private=private, public=public, fingerprint=public_key_fingerprint(public))


register_key_cache(audit_key.cache_clear)


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def checkpoint_message(*, first_seq: int, last_seq: int, root: bytes, prev_root: bytes, created_at: datetime) -> bytes:
    """The exact bytes a checkpoint's signature covers: fixed-width fields after a domain tag."""
    if len(root) != 32 or len(prev_root) != 32:
        raise ValueError("roots are 32 bytes")
    return CHECKPOINT_DOMAIN + struct.pack(">qqq", first_seq, last_seq, _micros(created_at)) + root + prev_root


def checkpoint_sign(message: bytes, *, key: AuditKey | None = None) -> tuple[bytes, str]:
    """Sign with the configured key (or `key`); returns the signature and the signer's fingerprint."""
    key = key or audit_key()
    return key.private.sign(message), key.fingerprint


def signature_valid(message: bytes, signature: bytes, *, public: Ed25519PublicKey) -> bool:
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True
