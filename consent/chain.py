"""Asking the chain itself whether a grant is in force (workers re-check before they act on a grant)."""

from __future__ import annotations

from consent.models import Grant
from consent.services import chain_grant
from ledger.client import chain_client


def grant_active_on_chain(grant: Grant) -> bool:
    """The ConsentRegistry's `isActive` for this grant, its grantee and its scope commitment, at the latest block.

    Raises ChainUnavailable when the node cannot be asked: a caller must then wait and ask
    again, never act as if the answer were yes.
    """
    struct = chain_grant(grant)
    return chain_client().is_active(bytes.fromhex(grant.id[2:]), struct.grantee, struct.scope_commitment)
