"""The server's RS256 key for OpenID Connect id_tokens: from the environment, else a key file made on first use.

HEALTHLEDGER_OIDC_SIGNING_KEY holds a PEM private key; when unset, `oidc_signing_key.pem` under
KEYS_DIR is created (mode 0600, O_EXCL so processes starting together agree on one key) like
the server's other keys (healthledger/lib/keyfiles.py). The key is never logged and never in
the database; only its public half is published (/oauth/jwks).
"""

from __future__ import annotations

import contextlib
import functools
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from jwcrypto import jwk

from healthledger.errors import KeyUnavailable
from healthledger.lib.keyfiles import key_file_path, register_key_cache

KEY_FILE = "oidc_signing_key.pem"
RSA_BITS = 3072


def _new_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem() -> bytes:
    configured = getattr(settings, "HEALTHLEDGER_OIDC_SIGNING_KEY", "")
    if configured:
        return configured.encode("ascii")
    path = key_file_path(KEY_FILE)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):  # another process made it first: read theirs
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(_new_pem())
                handle.flush()
                os.fsync(handle.fileno())
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyUnavailable("the OpenID signing key file cannot be read") from exc


@functools.cache
def signing_key() -> jwk.JWK:
    """The private RS256 signing key, its `kid` set to its RFC 7638 thumbprint."""
    try:
        key = jwk.JWK.from_pem(_pem())
    except (ValueError, TypeError) as exc:
        raise KeyUnavailable("the OpenID signing key is not a PEM private key") from exc
    if key.get("kty") != "RSA" or not key.has_private:
        raise KeyUnavailable("the OpenID signing key must be an RSA private key")
    key.update(kid=key.thumbprint(), alg="RS256", use="sig")
    return key


def public_jwks() -> dict[str, object]:
    """The JWKS that verifies this server's id_tokens: the public half only."""
    public = signing_key().export_public(as_dict=True)
    return {"keys": [public]}


register_key_cache(signing_key.cache_clear)
