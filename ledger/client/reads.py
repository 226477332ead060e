"""The chain seam's reads: ConsentRegistry's views and events at the latest block."""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from ledger.client.connection import ChainConnection
from ledger.client.results import Anchor, GrantEvent, GrantState
from ledger.signing import Grant


class ChainReads(ChainConnection):
    """Calls and event logs; nothing here sends a transaction."""

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

    def has_code(self, address: str) -> bool:
        """Whether this artifact's contract really runs at `address` (a reset dev chain loses it)."""
        with self._errors():
            code = bytes(self.w3.eth.get_code(to_checksum_address(address)))
        return self.artifact.runs_at(code)

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


ANCHOR_GENESIS_HEAD = keccak(text="HealthLedger access log anchors v1")


def anchor_head_after(head: bytes, root: bytes, size: int) -> bytes:
    """The contract's running anchor hash after one more anchor: folding every AccessLogAnchored event from
    ANCHOR_GENESIS_HEAD must give anchorHead(), or an anchor is missing from what was read."""
    return keccak(abi_encode(["bytes32", "bytes32", "uint64"], [head, root, size]))
