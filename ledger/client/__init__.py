"""The one seam to the chain: ConsentRegistry through web3, for the in-process EVM and for any JSON-RPC node.

Typed, no business decisions, one error family out:
- `ContractReverted` (a `ChainError`, permanent) when the contract refuses: `reason` is the custom error's
  name ("GrantExists", "InvalidSigner", ...) so a caller can tell "already done" from "never will be";
- `ChainError(permanent=False)` when the node refuses a transaction for a reason that may pass (nonce, fees);
- `ChainUnavailable` when the node is down, slow, or not configured.

The in-process EVM raises `eth_tester.exceptions.TransactionFailed` and a real node raises
`web3.exceptions.ContractLogicError` for the same revert; both become the same `ContractReverted` here.
Transactions are signed locally by the operator key and sent raw; the node never holds a key.
"""

from __future__ import annotations

from healthledger.lib.keyfiles import register_key_cache
from ledger.client.artifact import ARTIFACT_PATH, Artifact, load_artifact
from ledger.client.connection import OPERATOR_KEY_FILE, operator_key_from_settings
from ledger.client.errors import ContractReverted, NonceConsumed
from ledger.client.reads import ANCHOR_GENESIS_HEAD, ChainReads, anchor_head_after
from ledger.client.results import Anchor, Deployed, GrantEvent, GrantState, Receipt, SignedTx, TxRef
from ledger.client.transactions import ChainTransactions

__all__ = [
    "ANCHOR_GENESIS_HEAD",
    "ARTIFACT_PATH",
    "OPERATOR_KEY_FILE",
    "Anchor",
    "Artifact",
    "ChainClient",
    "ContractReverted",
    "Deployed",
    "GrantEvent",
    "GrantState",
    "NonceConsumed",
    "Receipt",
    "SignedTx",
    "TxRef",
    "anchor_head_after",
    "chain_client",
    "chain_client_reset",
    "chain_health",
    "load_artifact",
    "operator_key_from_settings",
]


class ChainClient(ChainTransactions, ChainReads):
    """ConsentRegistry on one chain, spoken to by the operator account."""


_client: ChainClient | None = None


def chain_client() -> ChainClient:
    """The process's client, built from settings on first use (one in-process chain per process in tests)."""
    global _client
    if _client is None:
        _client = ChainClient.from_settings()
    return _client


def chain_client_reset() -> None:
    """Forget the cached client: the operator key or the chain settings changed (tests, rotation)."""
    global _client
    _client = None


register_key_cache(chain_client_reset)


def chain_health() -> str:
    """ "up" when the node answers, else "down (<error type>)"; never raises."""
    try:
        chain_client().latest_block()
    except Exception as exc:  # a health check reports every failure the same way
        return f"down ({type(exc).__name__})"
    return "up"
