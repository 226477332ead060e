"""The chain seam's writes: the operator's transactions, sent and awaited, or prepared, signed and broadcast
by the outbox relay without ever blocking. Signed locally by the operator key and sent raw."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from eth_utils import to_checksum_address
from eth_utils.exceptions import ValidationError as EthValidationError
from web3.exceptions import TransactionNotFound, Web3RPCError

from healthledger.errors import ChainError
from ledger.client.connection import ChainConnection
from ledger.client.errors import _ALREADY_KNOWN, ContractReverted, NonceConsumed, _tester_nonces
from ledger.client.results import Deployed, Receipt, SignedTx, TxRef
from ledger.signing import ZERO_ADDRESS, Grant, KeyChange, Signature, terms_hash

logger = logging.getLogger(__name__)


class ChainTransactions(ChainConnection):
    """Transactions from the operator account."""

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
