"""The outbox's answers from the chain about grants and revocations, applied to the mirror."""

from __future__ import annotations

import logging

from django.utils import timezone

from consent.models import Grant, GrantStatus
from consent.services.terms import _chain_payload
from ledger.outbox import outbox_enqueue

logger = logging.getLogger(__name__)


def grant_confirmed(*, grant_id: str, tx_hash: str, block_number: int | None) -> Grant | None:
    """Outbox handler: the grant is on chain. Marks it recorded, unless the patient revoked it meanwhile."""
    grant = Grant.objects.select_for_update().filter(pk=grant_id).first()  # same race as grant_revoke
    if grant is None:
        return None
    grant.tx_hash = tx_hash
    grant.block_number = block_number
    grant.recorded_at = timezone.now()
    if grant.status == GrantStatus.PENDING:
        grant.status = GrantStatus.RECORDED
    grant.save(update_fields=["tx_hash", "block_number", "recorded_at", "status"])
    if grant.status == GrantStatus.REVOKED:
        outbox_enqueue(kind="revoke", ref=grant.id, payload=_chain_payload(grant, grant.revocation_signature))
    return grant


def grant_chain_failed(*, grant_id: str, error: str) -> None:
    """Outbox handler: the chain refused the grant for good; it never becomes active."""
    Grant.objects.filter(pk=grant_id, status=GrantStatus.PENDING).update(status=GrantStatus.FAILED)
    logger.warning("grant refused by the chain id=%s error=%s", grant_id[:18], error[:80])


def grant_chain_lost(*, grant_id: str) -> None:
    """Outbox handler: the block that recorded the grant is gone from the chain (a node lost it, a reorg).

    Back to pending until the outbox sends it again and it confirms: no read is allowed on a grant the
    chain does not hold. A revoked grant stays revoked (the database enforces a revocation at once).
    """
    Grant.objects.filter(pk=grant_id, status=GrantStatus.RECORDED).update(status=GrantStatus.PENDING)
    Grant.objects.filter(pk=grant_id).update(tx_hash="", block_number=None)
    logger.warning("grant lost from the chain id=%s; waiting for it to be recorded again", grant_id[:18])


def revocation_chain_lost(*, grant_id: str) -> None:
    """Outbox handler: the block that recorded the revocation is gone; it stays revoked here and is sent again."""
    Grant.objects.filter(pk=grant_id).update(revocation_tx_hash="", revocation_block_number=None)
    logger.warning("revocation lost from the chain id=%s; sending it again", grant_id[:18])


def revocation_confirmed(*, grant_id: str, tx_hash: str, block_number: int | None) -> None:
    """Outbox handler: the revocation is on chain."""
    Grant.objects.filter(pk=grant_id).update(revocation_tx_hash=tx_hash, revocation_block_number=block_number)
