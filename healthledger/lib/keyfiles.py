"""Secrets that live outside the database: from an environment variable, else a key file.

Key files are created on first use under settings.KEYS_DIR with mode 0600. Creation
uses O_EXCL so the web server and a worker starting together agree on one key.
Callers get raw bytes; what the bytes are for is their business.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from healthledger.errors import KeyUnavailable

KEY_BYTES = 32


def decode_key(text: str, *, name: str) -> bytes:
    """Decode a urlsafe-base64 key (padding optional) and check its length."""
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError) as exc:
        raise KeyUnavailable(f"{name} is not valid base64") from exc
    if len(raw) != KEY_BYTES:
        raise KeyUnavailable(f"{name} must decode to {KEY_BYTES} bytes")
    return raw


def encode_key(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def key_file_path(filename: str) -> Path:
    return Path(settings.KEYS_DIR) / filename


def write_key_file(path: Path, raw: bytes, *, exclusive: bool = True) -> None:
    """Write a key file with mode 0600; with exclusive, fail if it already exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(encode_key(raw) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_or_create_key(*, env_value: str, filename: str, name: str) -> bytes:
    """The key from the environment when given, else from its file, created on first use."""
    if env_value:
        return decode_key(env_value, name=name)
    path = key_file_path(filename)
    if not path.exists():
        # Another process may have created it first: then read theirs.
        with contextlib.suppress(FileExistsError):
            write_key_file(path, secrets.token_bytes(KEY_BYTES))
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeyUnavailable(f"{name} key file cannot be read") from exc
    return decode_key(text, name=name)


_CACHE_CLEARERS: list[Callable[[], None]] = []


def register_key_cache(clear: Callable[[], None]) -> None:
    """Key providers cache loaded keys in memory; tests and rotation clear them all at once."""
    _CACHE_CLEARERS.append(clear)


def clear_key_caches() -> None:
    for clear in _CACHE_CLEARERS:
        clear()
