"""Confirmations the chain took back: a message confirmed in a block the chain no longer has goes back to
`sent` with the same bytes, and its kind's `on_reorged` handler takes the confirmed state back."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from ledger.client import ChainClient, chain_client
from ledger.models import OutboxMessage, OutboxStatus
from ledger.outbox.handlers import outbox_handlers
from ledger.outbox.report import RelayReport

logger = logging.getLogger(__name__)


def _reopen_lost(client: ChainClient, report: RelayReport) -> None:
    """Messages confirmed in blocks the chain no longer has: back to sent, same bytes, handlers told.

    A transaction of the relayer is mined iff the account's mined count is above its nonce, so a confirmed
    message at or above that count lost its block. One call per pass re-checks every confirmation ever made.
    """
    sender = client.operator.address
    mined = client.transaction_count("latest")
    # A mined revert (failed, with a nonce) lost with its block leaves a gap too: it is sent again and fails
    # again, its handler being idempotent; only a lost confirmation has a state to take back.
    lost = OutboxMessage.objects.filter(
        status__in=[OutboxStatus.CONFIRMED, OutboxStatus.FAILED],
        chain_id=client.chain_id,
        sender=sender,
        nonce__gte=mined,
    ).order_by("nonce")
    for message in lost:
        was = message.status
        with transaction.atomic():
            # Compare-and-set, as _finish: of two relays finding the same loss, one reopens it.
            if not OutboxMessage.objects.filter(pk=message.pk, status=was).update(
                status=OutboxStatus.SENT,
                broadcast_at=None,
                block_number=None,
                finished_at=None,
                next_attempt_at=timezone.now(),
                last_error="reorg: its block is gone",
            ):
                continue
            message.refresh_from_db()
            handlers = outbox_handlers(message.kind)
            if was == OutboxStatus.CONFIRMED and handlers is not None and handlers.on_reorged is not None:
                handlers.on_reorged(message)
        report.reorged += 1
        logger.warning(
            "outbox message %s (%s) nonce %d: its block is gone from the chain; sending it again",
            message.pk,
            message.kind,
            message.nonce,
        )


def outbox_recheck(*, client: ChainClient | None = None) -> int:
    """Take back every confirmation whose block the chain no longer has (see _reopen_lost); returns how many.

    The relay does this on every pass; reconcile_chain calls it first so what was lost is in flight again.
    """
    report = RelayReport()
    _reopen_lost(client or chain_client(), report)
    return report.reorged
