"""Enqueueing: every chain write is a row written in the same transaction as the change it records."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import connection, transaction

from ledger.models import OutboxKind, OutboxMessage
from ledger.outbox.payloads import _check_payload

logger = logging.getLogger(__name__)


def outbox_enqueue(*, kind: str, ref: str, payload: dict[str, Any]) -> OutboxMessage:
    """Record a chain write in the caller's transaction; the relay is queued when that transaction commits.

    Enqueueing the same (kind, ref) again returns the existing row; the same key with a different payload
    is a programming error (ValueError). A malformed payload is refused here, in the caller's transaction.
    """
    if not connection.in_atomic_block:
        # The row must commit or roll back with the change it records: a grant without its chain write,
        # or a chain write for a grant that was rolled back, is never allowed.
        raise RuntimeError("outbox_enqueue must be called inside the operation's transaction.atomic()")
    if kind not in OutboxKind.values:
        raise ValueError(f"unknown outbox kind {kind!r}")
    _check_payload(kind, payload)
    normalized = json.loads(json.dumps(payload))
    # INSERT ... ON CONFLICT DO NOTHING: a concurrent enqueue of the same write waits for the other
    # transaction and then finds its row, without an IntegrityError breaking the caller's transaction.
    OutboxMessage.objects.bulk_create([OutboxMessage(kind=kind, ref=ref, payload=normalized)], ignore_conflicts=True)
    message = OutboxMessage.objects.get(kind=kind, ref=ref)
    if message.payload != normalized:
        raise ValueError(f"outbox {kind} {ref[:18]} was already enqueued with a different payload")
    transaction.on_commit(_queue_relay)
    return message


def _queue_relay() -> None:
    try:
        from ledger.tasks import outbox_relay_task

        outbox_relay_task.apply_async(retry=False)
    except Exception as exc:  # broker down: the write is safe in the outbox and beat's next tick relays it
        logger.warning("could not queue the outbox relay (%s); beat will run it", type(exc).__name__)
