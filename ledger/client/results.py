"""What the chain seam returns: transactions, receipts, grant state and events, as plain frozen values."""

from __future__ import annotations

from dataclasses import dataclass


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
