"""The chain's one error family: what the in-process EVM and a JSON-RPC node raise, translated.

The in-process EVM raises `eth_tester.exceptions.TransactionFailed` and a real node raises
`web3.exceptions.ContractLogicError` for the same revert; both become the same `ContractReverted` here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import requests
from eth_abi import decode as abi_decode
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    Web3Exception,
    Web3RPCError,
)

from healthledger.errors import ChainError, ChainUnavailable

if TYPE_CHECKING:
    from ledger.client.artifact import Artifact

try:  # the in-process EVM is a test/dev dependency; a production node never needs it
    from eth_tester.exceptions import TransactionFailed
except ImportError:  # pragma: no cover
    TransactionFailed = None  # type: ignore[assignment,misc]


@dataclass
class ContractReverted(ChainError):
    """The contract refused the call; `reason` names its custom error, or is empty when the node did not say."""

    reason: str = field(default="", kw_only=True)


@dataclass
class NonceConsumed(ChainError):
    """A signed transaction's nonce was used on chain by a different transaction: this one can never be mined."""


def _revert_data_from_tester(exc: Exception) -> bytes | None:
    """eth-tester reports custom-error data as the repr of a bytes object inside its message."""
    message = str(exc.args[0]) if exc.args else ""
    text = message.removeprefix("execution reverted: ")
    if text.startswith(("b'", 'b"')):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, bytes) else None
    return None


def _revert_data_from_web3(exc: ContractLogicError) -> bytes | None:
    data = exc.data
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return data if isinstance(data, bytes) else None


def _reverted(artifact: Artifact, data: bytes | None, fallback: str) -> ContractReverted:
    if data and len(data) >= 4 and data[:4] in artifact.errors_by_selector:
        item = artifact.errors_by_selector[data[:4]]
        types = [arg["type"] for arg in item["inputs"]]
        try:
            values = abi_decode(types, data[4:]) if types else ()
        except Exception:  # undecodable arguments still leave a usable name
            values = ()
        shown = ", ".join("0x" + v.hex() if isinstance(v, bytes) else str(v) for v in values)
        return ContractReverted(f"ConsentRegistry reverted: {item['name']}({shown})", reason=item["name"])
    return ContractReverted(f"ConsentRegistry reverted: {fallback[:200]}", reason="")


@contextmanager
def chain_errors(artifact: Artifact) -> Iterator[None]:
    """Translate what web3, the node and the in-process EVM raise into ChainError / ChainUnavailable."""
    try:
        yield
    except ContractLogicError as exc:
        raise _reverted(artifact, _revert_data_from_web3(exc), str(exc)) from exc
    except (requests.ConnectionError, requests.Timeout, ProviderConnectionError, RequestTimedOut) as exc:
        raise ChainUnavailable(f"chain node unavailable ({type(exc).__name__})") from exc
    except TimeExhausted as exc:
        raise ChainUnavailable("timed out waiting for a receipt") from exc
    except Web3RPCError as exc:
        # nonce too low, underpriced, out of funds...: the node refused; a later attempt may pass.
        raise ChainError(f"chain node refused the request: {exc.message[:200]}", permanent=False) from exc
    except Exception as exc:
        if TransactionFailed is not None and isinstance(exc, TransactionFailed):
            raise _reverted(artifact, _revert_data_from_tester(exc), str(exc)) from exc
        if isinstance(exc, Web3Exception | ValueError | OSError):
            raise ChainError(f"chain call failed ({type(exc).__name__})", permanent=False) from exc
        raise


# What nodes answer when they already hold these exact bytes (anvil, geth, Besu).
_ALREADY_KNOWN = ("already known", "already imported", "known transaction")
_TESTER_NONCE = re.compile(r"Expected (\d+), but got (\d+)")


def _tester_nonces(message: str) -> tuple[int | None, int | None]:
    """(expected, got) from eth-tester's "Invalid transaction nonce: Expected 2, but got 0"."""
    match = _TESTER_NONCE.search(message)
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2))
