"""Outbox callbacks: the chain's answer to an access-log anchor, applied to its row."""

from __future__ import annotations

from typing import Any

from audit import anchoring


def anchor_landed(message: Any) -> None:
    anchoring.anchor_confirmed(anchor_id=int(message.ref), tx_hash=message.tx_hash, block_number=message.block_number)


def anchor_lost(message: Any) -> None:
    anchoring.anchor_lost(anchor_id=int(message.ref))


def anchor_refused(message: Any) -> None:
    anchoring.anchor_failed(anchor_id=int(message.ref), error=message.last_error or "")
