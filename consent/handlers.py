"""Outbox callbacks: the chain's answer to a grant or a revocation, applied to the mirror."""

from __future__ import annotations

from typing import Any

from consent import key_reset, services


def grant_landed(message: Any) -> None:
    services.grant_confirmed(grant_id=message.ref, tx_hash=message.tx_hash, block_number=message.block_number)


def grant_refused(message: Any) -> None:
    services.grant_chain_failed(grant_id=message.ref, error=message.last_error or "")


def grant_lost(message: Any) -> None:
    services.grant_chain_lost(grant_id=message.ref)


def revocation_lost(message: Any) -> None:
    services.revocation_chain_lost(grant_id=message.ref)


def revocation_landed(message: Any) -> None:
    services.revocation_confirmed(grant_id=message.ref, tx_hash=message.tx_hash, block_number=message.block_number)


def key_reset_landed(message: Any) -> None:
    key_reset.key_reset_on_chain(address=message.ref)


def key_reset_done_landed(message: Any) -> None:
    key_reset.key_reset_completed(address=message.ref)


def key_reset_refused(message: Any) -> None:
    key_reset.key_reset_chain_refused(address=message.ref)
