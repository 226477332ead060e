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

import ast
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import function_abi_to_4byte_selector, keccak, to_checksum_address
from eth_utils.exceptions import ValidationError as EthValidationError
from web3 import Web3
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.types import RPCEndpoint

from healthledger.errors import ChainError, ChainUnavailable
from healthledger.lib.keyfiles import load_or_create_key, register_key_cache
from ledger.signing import ZERO_ADDRESS, Grant, KeyChange, Signature, terms_hash

try:  # the in-process EVM is a test/dev dependency; a production node never needs it
    from eth_tester.exceptions import TransactionFailed
except ImportError:  # pragma: no cover
    TransactionFailed = None  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)

ARTIFACT_PATH = Path(__file__).resolve().parent.parent / "contracts" / "ConsentRegistry.json"
OPERATOR_KEY_FILE = "chain-operator.key"


@dataclass
class ContractReverted(ChainError):
    """The contract refused the call; `reason` names its custom error, or is empty when the node did not say."""

    reason: str = field(default="", kw_only=True)


@dataclass
class NonceConsumed(ChainError):
    """A signed transaction's nonce was used on chain by a different transaction: this one can never be mined."""


@dataclass(frozen=True)
class SignedTx:
    """An operator transaction signed for one nonce and not yet sent: the exact bytes a relay keeps and resends."""

    raw: bytes
    hash: str
    nonce: int


@dataclass(frozen=True)
class Receipt:
    """A mined transaction: where, whether it succeeded, and how many blocks (its own included) sit on it."""

    hash: str
    block: int
    succeeded: bool
    gas_used: int
    confirmations: int


@dataclass(frozen=True)
class TxRef:
    """A transaction sent by the operator; `block` and `gas_used` are None until it is mined."""

    hash: str
    block: int | None = None
    gas_used: int | None = None


@dataclass(frozen=True)
class Deployed:
    address: str
    tx: TxRef


@dataclass(frozen=True)
class GrantState:
    recorded: bool
    revoked: bool
    not_before: int
    not_after: int


@dataclass(frozen=True)
class Anchor:
    """One AccessLogAnchored event: the log's Merkle root over its first `size` entries."""

    root: bytes
    size: int
    head: bytes
    block: int
    tx: str


@dataclass(frozen=True)
class GrantEvent:
    """A GrantRecorded or GrantRevoked event, for reconciliation with the database."""

    kind: str  # "recorded" | "revoked"
    grant_id: bytes
    block: int
    tx: str
    patient: str = ""
    grantee: str = ""
    scope_commitment: bytes = b""


@dataclass(frozen=True)
class Artifact:
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    immutable_ranges: tuple[tuple[int, int], ...] = ()

    def runs_at(self, code: bytes) -> bool:
        """Whether on-chain runtime code is this artifact's, ignoring the bytes the constructor fills in."""
        expected = bytearray(bytes.fromhex(self.deployed_bytecode.removeprefix("0x")))
        if len(code) != len(expected):
            return False
        actual = bytearray(code)
        for start, length in self.immutable_ranges:
            actual[start : start + length] = expected[start : start + length]
        return actual == expected

    @cached_property
    def hash(self) -> str:
        """sha256 of the creation bytecode: which contract a Deployment row runs."""
        return hashlib.sha256(bytes.fromhex(self.bytecode.removeprefix("0x"))).hexdigest()

    @cached_property
    def errors_by_selector(self) -> dict[bytes, dict[str, Any]]:
        errors: list[Any] = [item for item in self.abi if item["type"] == "error"]
        return {function_abi_to_4byte_selector(item): item for item in errors}


def load_artifact(path: Path = ARTIFACT_PATH) -> Artifact:
    """The committed compiler output (see contracts/compile.js)."""
    raw = json.loads(path.read_text())
    return Artifact(
        abi=raw["abi"],
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
        immutable_ranges=tuple((ref["start"], ref["length"]) for ref in raw.get("immutableReferences", [])),
    )


def _http_provider(url: str, timeout: float) -> Any:
    """A JSON-RPC provider that asks the node its chain id once.

    web3 asks eth_chainId before every call and transaction it builds, which doubled the requests of a
    grant check. Only eth_chainId is cached: blocks, receipts and state must follow the chain, reorgs included.
    """
    return Web3.HTTPProvider(
        url,
        request_kwargs={"timeout": timeout},
        exception_retry_configuration=None,  # the relay owns retries; a health check must not hang
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
    )


def operator_key_from_settings() -> bytes:
    """HEALTHLEDGER_CHAIN_OPERATOR_KEY (0x-hex, or urlsafe base64), else a key file under KEYS_DIR."""
    value = settings.HEALTHLEDGER_CHAIN_OPERATOR_KEY.strip()
    if value.startswith("0x"):
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError as exc:
            raise ChainUnavailable("HEALTHLEDGER_CHAIN_OPERATOR_KEY is not valid hex") from exc
        if len(raw) != 32:
            raise ChainUnavailable("HEALTHLEDGER_CHAIN_OPERATOR_KEY must be 32 bytes")
        return raw
    return load_or_create_key(env_value=value, filename=OPERATOR_KEY_FILE, name="chain operator key")


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


class ChainClient:
    """ConsentRegistry on one chain, spoken to by the operator account."""

    def __init__(
        self,
        *,
        w3: Web3,
        operator_key: bytes,
        address: str | None = None,
        artifact: Artifact | None = None,
        receipt_timeout: float = 120.0,
    ) -> None:
        self.w3 = w3
        self.operator: LocalAccount = Account.from_key(operator_key)
        self.artifact = artifact or load_artifact()
        self.receipt_timeout = receipt_timeout
        self._address: str | None = to_checksum_address(address) if address else None

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_settings(cls) -> ChainClient:
        """CHAIN_RPC_URL when set, else the in-process EVM when CHAIN_BACKEND == "tester"."""
        timeout = float(settings.CHAIN_TIMEOUT_SECONDS)
        if settings.CHAIN_RPC_URL:
            provider: Any = _http_provider(settings.CHAIN_RPC_URL, timeout)
        elif settings.CHAIN_BACKEND == "tester":
            provider = Web3.EthereumTesterProvider()
        else:
            raise ChainUnavailable("no chain configured: set CHAIN_RPC_URL (or CHAIN_BACKEND=tester)")
        return cls(w3=Web3(provider), operator_key=operator_key_from_settings(), receipt_timeout=timeout * 12)

    @classmethod
    def for_url(cls, url: str, *, operator_key: bytes, timeout: float = 10.0) -> ChainClient:
        """A client for one JSON-RPC endpoint with an explicit operator key (benchmarks, integration tests)."""
        return cls(w3=Web3(_http_provider(url, timeout)), operator_key=operator_key, receipt_timeout=timeout * 12)

    @cached_property
    def chain_id(self) -> int:
        with self._errors():
            return int(self.w3.eth.chain_id)

    @property
    def address(self) -> str:
        """The contract address: given at construction, else the newest matching Deployment row."""
        if self._address is None:
            from ledger.selectors import deployment_current

            deployment = deployment_current(chain_id=self.chain_id, artifact_hash=self.artifact.hash)
            if deployment is None:
                raise ChainUnavailable("ConsentRegistry is not deployed on this chain: run manage.py deploy_contracts")
            self._address = deployment.address
        return self._address

    def use(self, address: str) -> None:
        """Point this client at a contract address (after deploying, or to read another deployment)."""
        self._address = to_checksum_address(address)

    @property
    def contract(self) -> Any:
        # Building a contract object parses the whole ABI (milliseconds): once per address, not per call.
        address = to_checksum_address(self.address)
        cached = self.__dict__.get("_contract")
        if cached is None or cached.address != address:
            cached = self.__dict__["_contract"] = self.w3.eth.contract(address=address, abi=self.artifact.abi)
        return cached

    # --- error translation -------------------------------------------------------------

    def _reverted(self, data: bytes | None, fallback: str) -> ContractReverted:
        if data and len(data) >= 4 and data[:4] in self.artifact.errors_by_selector:
            item = self.artifact.errors_by_selector[data[:4]]
            types = [arg["type"] for arg in item["inputs"]]
            try:
                values = abi_decode(types, data[4:]) if types else ()
            except Exception:  # undecodable arguments still leave a usable name
                values = ()
            shown = ", ".join("0x" + v.hex() if isinstance(v, bytes) else str(v) for v in values)
            return ContractReverted(f"ConsentRegistry reverted: {item['name']}({shown})", reason=item["name"])
        return ContractReverted(f"ConsentRegistry reverted: {fallback[:200]}", reason="")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except ContractLogicError as exc:
            raise self._reverted(_revert_data_from_web3(exc), str(exc)) from exc
        except (requests.ConnectionError, requests.Timeout, ProviderConnectionError, RequestTimedOut) as exc:
            raise ChainUnavailable(f"chain node unavailable ({type(exc).__name__})") from exc
        except TimeExhausted as exc:
            raise ChainUnavailable("timed out waiting for a receipt") from exc
        except Web3RPCError as exc:
            # nonce too low, underpriced, out of funds...: the node refused; a later attempt may pass.
            raise ChainError(f"chain node refused the request: {exc.message[:200]}", permanent=False) from exc
        except Exception as exc:
            if TransactionFailed is not None and isinstance(exc, TransactionFailed):
                raise self._reverted(_revert_data_from_tester(exc), str(exc)) from exc
            if isinstance(exc, Web3Exception | ValueError | OSError):
                raise ChainError(f"chain call failed ({type(exc).__name__})", permanent=False) from exc
            raise

    # --- transactions -------------------------------------------------------------------

    def _send(self, call: Any, *, wait: bool) -> TxRef:
        with self._errors():
            tx = call.build_transaction(
                {
                    "from": self.operator.address,
                    "chainId": self.chain_id,
                    "nonce": self.w3.eth.get_transaction_count(self.operator.address, "pending"),
                }
            )
            signed = self.operator.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        ref = TxRef(hash="0x" + bytes(tx_hash).hex())
        return self.wait_for_receipt(ref.hash) if wait else ref

    def wait_for_receipt(self, tx_hash: str) -> TxRef:
        """Block until the transaction is mined; a mined revert is a ContractReverted."""
        with self._errors():
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout)  # type: ignore[arg-type]
        if receipt["status"] != 1:
            raise ContractReverted("transaction reverted on chain", reason="")
        return TxRef(hash=tx_hash, block=int(receipt["blockNumber"]), gas_used=int(receipt["gasUsed"]))

    def confirmations(self, tx_hash: str) -> int:
        """Blocks on top of the transaction's block, counting its own; 0 while pending or unknown."""
        with self._errors():
            try:
                receipt = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return 0
            return max(0, int(self.w3.eth.block_number) - int(receipt["blockNumber"]) + 1)

    # --- relay primitives: prepare, sign for a given nonce, broadcast, look up (never block) ---------

    def prepare(self, call: Any) -> dict[str, Any]:
        """The unsigned transaction for a contract call from the operator, gas estimated and fees set, no nonce.

        Estimating runs the call against the latest state, so a call that would revert raises
        ContractReverted here, before a nonce is spent on it.
        """
        with self._errors():
            tx: dict[str, Any] = dict(call.build_transaction({"from": self.operator.address, "chainId": self.chain_id}))
        tx.pop("nonce", None)
        return tx

    def sign(self, tx: dict[str, Any], *, nonce: int) -> SignedTx:
        """Sign a prepared transaction with this nonce. Local: no node is asked."""
        unsigned = {key: value for key, value in tx.items() if key != "from"}
        unsigned["nonce"] = nonce
        signed = self.operator.sign_transaction(unsigned)
        return SignedTx(raw=bytes(signed.raw_transaction), hash="0x" + bytes(signed.hash).hex(), nonce=nonce)

    def broadcast(self, raw: bytes, *, tx_hash: str) -> None:
        """Send signed bytes. Sending the same bytes again is success: the node already has them, or has mined them.

        Raises NonceConsumed when the nonce was used by a *different* transaction (this one can never be mined),
        ChainError(permanent=False) for a refusal that may pass later (a nonce gap the node cannot queue,
        fees), ChainUnavailable when the node is down.
        """
        with self._errors():
            try:
                self.w3.eth.send_raw_transaction(raw)
                return
            except Web3RPCError as exc:
                message = (exc.message or str(exc)).lower()
                if any(known in message for known in _ALREADY_KNOWN):
                    return
                if "nonce too low" not in message:
                    raise
            except EthValidationError as exc:  # the in-process EVM: no pool, the nonce must be exact
                expected, got = _tester_nonces(str(exc))
                if expected is None or got is None:
                    raise ChainError(f"transaction rejected ({type(exc).__name__})", permanent=False) from exc
                if got > expected:
                    raise ChainError("nonce gap: an earlier transaction is not on chain yet", permanent=False) from exc
        # The nonce is used on chain: by these very bytes (success) or by another transaction.
        if self.receipt(tx_hash) is None:
            raise NonceConsumed("the transaction's nonce was used by another transaction", permanent=True)

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt if the transaction is mined, else None; never waits."""
        with self._errors():
            try:
                found = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None
            latest = int(self.w3.eth.block_number)
        block = int(found["blockNumber"])
        return Receipt(
            hash=tx_hash,
            block=block,
            succeeded=found["status"] == 1,
            gas_used=int(found["gasUsed"]),
            confirmations=max(0, latest - block + 1),
        )

    def transaction_count(self, block: str = "pending", *, address: str | None = None) -> int:
        """An account's nonce (the operator's by default): transactions mined ("latest"), or mined and in the
        node's pool ("pending")."""
        account = to_checksum_address(address) if address else self.operator.address
        with self._errors():
            return int(self.w3.eth.get_transaction_count(account, block))  # type: ignore[arg-type]

    def block_number(self) -> int:
        with self._errors():
            return int(self.w3.eth.block_number)

    def grant_call(self, grant: Grant, signature: Signature) -> Any:
        """The recordGrant call, for prepare()."""
        return self.contract.functions.recordGrant(grant.as_abi_tuple(), signature.v, signature.r, signature.s)

    def revoke_call(self, grant: Grant, signature: Signature) -> Any:
        """The revoke call, for prepare()."""
        return self.contract.functions.revoke(grant.patient, terms_hash(grant), signature.v, signature.r, signature.s)

    def anchor_call(self, root: bytes, size: int) -> Any:
        """The anchor call, for prepare()."""
        return self.contract.functions.anchor(root, size)

    def key_call(self, change: KeyChange) -> Any:
        """registerKey (no previous key) or rotateKey (signed by the new key and the one it replaces), for prepare()."""
        functions = self.contract.functions
        if change.previous == ZERO_ADDRESS:
            return functions.registerKey(change.account, change.key, change.signature.to_bytes())
        assert change.previous_signature is not None
        return functions.rotateKey(
            change.account, change.key, change.signature.to_bytes(), change.previous_signature.to_bytes()
        )

    def key_reset_call(self, change: KeyChange) -> Any:
        """requestKeyReset: the operator-assisted reset, signed by the new key only; waits KEY_RESET_DELAY."""
        return self.contract.functions.requestKeyReset(change.account, change.key, change.signature.to_bytes())

    def key_reset_cancel_call(self, account: bytes, signature: Signature) -> Any:
        """cancelKeyReset, signed by the registered key over KeyResetCancel(account, pending key)."""
        return self.contract.functions.cancelKeyReset(account, signature.to_bytes())

    def key_reset_complete_call(self, account: bytes) -> Any:
        """completeKeyReset, once the delay has passed."""
        return self.contract.functions.completeKeyReset(account)

    def register_key(self, change: KeyChange, *, wait: bool = True) -> TxRef:
        """Relay a patient-signed key registration or rotation."""
        return self._send(self.key_call(change), wait=wait)

    def key_of(self, account: bytes) -> str:
        """The key the chain holds for an account today (the zero address: none)."""
        with self._errors():
            return str(to_checksum_address(self.contract.functions.keyOf(account).call()))

    def account_of(self, key: str) -> bytes:
        """The account a key was registered for (32 zero bytes: never registered)."""
        with self._errors():
            return bytes(self.contract.functions.accountOf(to_checksum_address(key)).call())

    def pending_key_reset(self, account: bytes) -> tuple[str, int]:
        """(new key, ready at) of a reset waiting for its delay; (zero address, 0) when none."""
        with self._errors():
            key, ready_at = self.contract.functions.pendingKeyReset(account).call()
        return str(to_checksum_address(key)), int(ready_at)

    def deploy(self) -> Deployed:
        """Deploy ConsentRegistry with this client's operator as its operator, and point the client at it."""
        factory = self.w3.eth.contract(abi=self.artifact.abi, bytecode=self.artifact.bytecode)
        ref = self._send(factory.constructor(self.operator.address), wait=True)
        with self._errors():
            receipt = self.w3.eth.get_transaction_receipt(ref.hash)  # type: ignore[arg-type]
        address = to_checksum_address(str(receipt["contractAddress"]))
        self.use(address)
        logger.info("deployed ConsentRegistry at %s on chain %s (block %s)", address, self.chain_id, ref.block)
        return Deployed(address=address, tx=ref)

    def has_code(self, address: str) -> bool:
        """Whether this artifact's contract really runs at `address` (a reset dev chain loses it)."""
        with self._errors():
            code = bytes(self.w3.eth.get_code(to_checksum_address(address)))
        return self.artifact.runs_at(code)

    def record_grant(self, grant: Grant, signature: Signature, *, wait: bool = True) -> TxRef:
        """Relay one patient-signed grant."""
        return self._send(self.grant_call(grant, signature), wait=wait)

    def record_grants(self, batch: Sequence[tuple[Grant, Signature]], *, wait: bool = True) -> TxRef:
        """Relay several patient-signed grants in one transaction; one bad grant reverts the batch."""
        items = [(grant.as_abi_tuple(), sig.v, sig.r, sig.s) for grant, sig in batch]
        return self._send(self.contract.functions.recordGrants(items), wait=wait)

    def revoke(self, grant: Grant, signature: Signature, *, wait: bool = True) -> TxRef:
        """Relay a patient-signed revocation (the signature is over Revoke(grant id))."""
        return self._send(self.revoke_call(grant, signature), wait=wait)

    def anchor(self, root: bytes, size: int, *, wait: bool = True) -> TxRef:
        """Anchor the access log's Merkle root over its first `size` entries."""
        return self._send(self.anchor_call(root, size), wait=wait)

    # --- reads --------------------------------------------------------------------------

    def is_active(self, grant_id: bytes, grantee: str, scope_commitment: bytes) -> bool:
        """The contract's view at the latest block."""
        with self._errors():
            return bool(
                self.contract.functions.isActive(grant_id, to_checksum_address(grantee), scope_commitment).call()
            )

    def grant_state(self, grant_id: bytes) -> GrantState:
        with self._errors():
            recorded, revoked, not_before, not_after = self.contract.functions.grantState(grant_id).call()
        return GrantState(recorded=recorded, revoked=revoked, not_before=not_before, not_after=not_after)

    def hash_grant(self, grant: Grant) -> bytes:
        """The grant id as the contract computes it (ledger.signing.grant_id must agree)."""
        with self._errors():
            return bytes(self.contract.functions.hashGrant(grant.as_abi_tuple()).call())

    def anchor_head(self) -> bytes:
        with self._errors():
            return bytes(self.contract.functions.anchorHead().call())

    def anchors(self, from_block: int = 0) -> list[Anchor]:
        """Every anchor since `from_block`, oldest first."""
        with self._errors():
            logs = self.contract.events.AccessLogAnchored.get_logs(from_block=from_block)
        return [
            Anchor(
                root=bytes(log["args"]["root"]),
                size=int(log["args"]["size"]),
                head=bytes(log["args"]["head"]),
                block=int(log["blockNumber"]),
                tx="0x" + bytes(log["transactionHash"]).hex(),
            )
            for log in sorted(logs, key=lambda item: (item["blockNumber"], item["logIndex"]))
        ]

    def grant_events(self, from_block: int = 0) -> list[GrantEvent]:
        """Every GrantRecorded and GrantRevoked since `from_block`, in chain order."""
        with self._errors():
            recorded = self.contract.events.GrantRecorded.get_logs(from_block=from_block)
            revoked = self.contract.events.GrantRevoked.get_logs(from_block=from_block)
        events = [
            (
                (log["blockNumber"], log["logIndex"]),
                GrantEvent(
                    kind="recorded",
                    grant_id=bytes(log["args"]["id"]),
                    block=int(log["blockNumber"]),
                    tx="0x" + bytes(log["transactionHash"]).hex(),
                    patient=str(log["args"]["patient"]),
                    grantee=str(log["args"]["grantee"]),
                    scope_commitment=bytes(log["args"]["scopeCommitment"]),
                ),
            )
            for log in recorded
        ] + [
            (
                (log["blockNumber"], log["logIndex"]),
                GrantEvent(
                    kind="revoked",
                    grant_id=bytes(log["args"]["id"]),
                    block=int(log["blockNumber"]),
                    tx="0x" + bytes(log["transactionHash"]).hex(),
                ),
            )
            for log in revoked
        ]
        return [event for _, event in sorted(events, key=lambda pair: pair[0])]

    def grant_event(self, grant_id: bytes, *, kind: str, from_block: int = 0) -> GrantEvent | None:
        """The first GrantRecorded ("recorded") or GrantRevoked ("revoked") event for one grant id, if any."""
        event = self.contract.events.GrantRecorded if kind == "recorded" else self.contract.events.GrantRevoked
        with self._errors():
            logs = list(event.get_logs(argument_filters={"id": grant_id}, from_block=from_block))
        if not logs:
            return None
        first = min(logs, key=lambda item: (item["blockNumber"], item["logIndex"]))
        return GrantEvent(
            kind=kind,
            grant_id=bytes(first["args"]["id"]),
            block=int(first["blockNumber"]),
            tx="0x" + bytes(first["transactionHash"]).hex(),
        )

    def latest_block(self) -> tuple[int, int]:
        """(number, timestamp) of the latest block."""
        with self._errors():
            block = self.w3.eth.get_block("latest")
        return int(block["number"]), int(block["timestamp"])

    # --- development chains ---------------------------------------------------------------

    def operator_fund_from_node(self, *, minimum_wei: int, amount_wei: int) -> TxRef | None:
        """On a development node (anvil, the in-process EVM) top up the operator from the node's first
        unlocked account. Returns None when no top-up was needed; a real node has no unlocked account."""
        with self._errors():
            if int(self.w3.eth.get_balance(self.operator.address)) >= minimum_wei:
                return None
            accounts = list(self.w3.eth.accounts)
            if not accounts:
                raise ChainError("the operator account has no funds and the node has no dev account", permanent=True)
            top_up: Any = {"from": accounts[0], "to": self.operator.address, "value": amount_wei}
            tx_hash = self.w3.eth.send_transaction(top_up)
        return self.wait_for_receipt("0x" + bytes(tx_hash).hex())


# What nodes answer when they already hold these exact bytes (anvil, geth, Besu).
_ALREADY_KNOWN = ("already known", "already imported", "known transaction")
_TESTER_NONCE = re.compile(r"Expected (\d+), but got (\d+)")


def _tester_nonces(message: str) -> tuple[int | None, int | None]:
    """(expected, got) from eth-tester's "Invalid transaction nonce: Expected 2, but got 0"."""
    match = _TESTER_NONCE.search(message)
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2))


ANCHOR_GENESIS_HEAD = keccak(text="HealthLedger access log anchors v1")


def anchor_head_after(head: bytes, root: bytes, size: int) -> bytes:
    """The contract's running anchor hash after one more anchor: folding every AccessLogAnchored event from
    ANCHOR_GENESIS_HEAD must give anchorHead(), or an anchor is missing from what was read."""
    return keccak(abi_encode(["bytes32", "bytes32", "uint64"], [head, root, size]))


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
