"""The id_token signing key: kept like the server's other keys (a 0600 file made once, or the environment)."""

from __future__ import annotations

import stat

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.signing_key import KEY_FILE, public_jwks, signing_key
from healthledger.lib.keyfiles import clear_key_caches, key_file_path


def test_the_key_file_is_made_once_with_mode_0600_and_reused(settings, tmp_path):
    settings.KEYS_DIR = tmp_path / "keys"
    clear_key_caches()

    first = signing_key()
    path = key_file_path(KEY_FILE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    clear_key_caches()
    assert signing_key().thumbprint() == first.thumbprint()  # read back, not made again
    assert first["alg"] == "RS256"
    assert first["kid"] == first.thumbprint()
    clear_key_caches()


def test_the_environment_key_wins_and_only_its_public_half_is_published(settings, tmp_path):
    settings.KEYS_DIR = tmp_path / "keys"
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    settings.HEALTHLEDGER_OIDC_SIGNING_KEY = pem.decode()
    clear_key_caches()

    published = public_jwks()["keys"]

    assert not key_file_path(KEY_FILE).exists()
    assert len(published) == 1
    assert set(published[0]) == {"kty", "n", "e", "kid", "alg", "use"}
    clear_key_caches()
