"""The relayer's nonces: each message is signed once, with the next free nonce, and its bytes committed
before the first broadcast."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from ledger.client import ChainClient
from ledger.models import OutboxMessage, OutboxStatus, RelayerState

logger = logging.getLogger(__name__)


def _relayer_state_lock() -> RelayerState:
    # The race this lock prevents: two relays (overlapping beat ticks, the command beside a worker) reading
    # the same next nonce and signing two different transactions with it. The singleton row is the lock,
    # held until commit. On SQLite the INSERT OR IGNORE is a write, so it takes the database's write lock
    # before anything is read (select_for_update is a no-op there).
    RelayerState.objects.bulk_create([RelayerState(id=1)], ignore_conflicts=True)
    return RelayerState.objects.select_for_update().get(pk=1)


def _sign_and_persist(
    client: ChainClient, message: OutboxMessage, tx: dict[str, Any], *, replaces: str | None = None
) -> OutboxMessage | None:
    """Give the message the next nonce, sign, and commit bytes + hash + nonce. Returns None when another relay
    got there first. The broadcast comes after the commit, never before."""
    # Asked outside the lock (a network call must not hold it). A stale answer is only ever low, and the
    # state row, which every one of our signatures advanced before its broadcast, is the floor anyway.
    pending_count = client.transaction_count("pending")
    sender = client.operator.address
    with transaction.atomic():
        state = _relayer_state_lock()
        rows = OutboxMessage.objects.select_for_update().filter(pk=message.pk)
        if replaces is None:
            rows = rows.filter(status=OutboxStatus.PENDING)
        else:
            rows = rows.filter(status=OutboxStatus.SENT, tx_hash=replaces)
        locked = rows.first()
        if locked is None:
            return None
        if (state.chain_id, state.sender) != (client.chain_id, sender):  # a new chain or a rotated relayer key
            state.chain_id, state.sender, state.next_nonce = client.chain_id, sender, pending_count
        # Re-synced when the chain is ahead (something else sent with the relayer key), and when it is behind
        # with a gap no stored message will fill (the chain forgot transactions): the lowest free nonce.
        nonce = _free_nonce(client.chain_id, sender, state.next_nonce, pending_count)
        signed = client.sign(tx, nonce=nonce)
        locked.status = OutboxStatus.SENT
        locked.chain_id, locked.sender, locked.nonce = client.chain_id, sender, nonce
        locked.raw_tx, locked.tx_hash = signed.raw, signed.hash
        locked.broadcast_at = None
        locked.next_attempt_at = timezone.now()
        locked.last_error = ""
        locked.save()
        state.next_nonce = max(state.next_nonce, nonce + 1)
        state.save(update_fields=["chain_id", "sender", "next_nonce"])
    logger.info("outbox message %s (%s) signed: nonce %d tx %s", locked.pk, locked.kind, nonce, signed.hash)
    return locked


def _free_nonce(chain_id: int, sender: str, next_nonce: int, chain_pending: int) -> int:
    """The nonce to sign with: the state row's, unless the chain's pending count shows a gap below it that no
    stored message holds (those would wait forever behind it); then the lowest nonce nobody holds."""
    if chain_pending >= next_nonce:
        return chain_pending
    held = set(
        OutboxMessage.objects.filter(chain_id=chain_id, sender=sender, nonce__gte=chain_pending).values_list(
            "nonce", flat=True
        )
    )
    free = next((n for n in range(chain_pending, next_nonce) if n not in held), None)
    if free is not None:
        logger.warning("relayer nonce %d is ahead of the chain's %d; filling nonce %d", next_nonce, chain_pending, free)
        return free
    return next_nonce
