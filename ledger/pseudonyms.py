"""Pseudonymous chain addresses for people who never sign on chain (clinicians, researchers, studies).

An address is derived from a server secret and a stable label ("user:17"), so the chain
sees a consistent pseudonym per grantee without any link to who they are. The secret
stays outside the database; without it, the label cannot be recovered from the address.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from django.conf import settings
from eth_utils import keccak, to_checksum_address

from healthledger.lib.keyfiles import load_or_create_key, register_key_cache


@lru_cache(maxsize=1)
def _pseudonym_key() -> bytes:
    return load_or_create_key(
        env_value=getattr(settings, "HEALTHLEDGER_PSEUDONYM_KEY", ""), filename="pseudonym.key", name="pseudonym key"
    )


register_key_cache(_pseudonym_key.cache_clear)


def pseudonymous_address(*, label: str) -> str:
    """A checksummed address standing for `label` on chain."""
    digest = hmac.new(_pseudonym_key(), label.encode("utf-8"), hashlib.sha256).digest()
    return str(to_checksum_address(keccak(digest)[-20:]))
