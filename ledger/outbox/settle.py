"""Settling a message: confirmed once deep enough or already done on chain, failed when the chain refuses for
good; the kind's handler runs in the transaction that settles it."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ledger import signing
from ledger.client import ChainClient
from ledger.models import OutboxKind, OutboxMessage, OutboxStatus
from ledger.outbox.handlers import outbox_handlers
from ledger.outbox.payloads import _grant_payload
from ledger.outbox.report import RelayReport, _back_off
from ledger.selectors import deployment_current

logger = logging.getLogger(__name__)


def _required_confirmations() -> int:
    return max(1, int(settings.CHAIN_CONFIRMATIONS))


def _finish(
    message: OutboxMessage,
    status: str,
    report: RelayReport,
    *,
    tx_hash: str | None = None,
    block: int | None = None,
    error: str = "",
) -> bool:
    now = timezone.now()
    updates: dict[str, Any] = {"status": status, "finished_at": now, "last_error": error[:200], "last_attempt_at": now}
    if tx_hash is not None:
        updates["tx_hash"] = tx_hash
    if block is not None:
        updates["block_number"] = block
    try:
        with transaction.atomic():
            # Compare-and-set on the status we read: of two relays settling one message (overlapping
            # beat ticks), exactly one changes the row and runs the handler. Works on SQLite too.
            if not OutboxMessage.objects.filter(pk=message.pk, status=message.status).update(**updates):
                return False
            message.refresh_from_db()
            handlers = outbox_handlers(message.kind)
            if handlers is not None:
                handler = handlers.on_confirmed if status == OutboxStatus.CONFIRMED else handlers.on_failed
                if handler is not None:
                    handler(message)
    except Exception as exc:  # a failing handler rolls the settlement back; the message is retried later
        logger.error("outbox %s handler failed for message %s (%s)", message.kind, message.pk, type(exc).__name__)
        report.deferred += _back_off([message.pk], error=f"handler: {type(exc).__name__}")
        return False
    if status == OutboxStatus.CONFIRMED:
        report.confirmed += 1
    else:
        report.failed += 1
        logger.warning("outbox message %s (%s) failed: %s", message.pk, message.kind, error)
    return True


def _deployment_block(client: ChainClient) -> int:
    deployment = deployment_current(chain_id=client.chain_id, artifact_hash=client.artifact.hash)
    return deployment.block if deployment is not None else 0


def _settle_from_chain_state(client: ChainClient, message: OutboxMessage, report: RelayReport) -> bool:
    """For a grant or revocation the chain refused: is its effect already on chain (relayed by someone, or by
    an earlier transaction of ours)? Then it is confirmed, with the transaction that did it. True = handled."""
    if message.kind == OutboxKind.KEY:
        change = signing.KeyChange.from_payload(message.payload)
        if client.account_of(change.key) != change.account:
            return False
        _finish(message, OutboxStatus.CONFIRMED, report)  # registered already (relayed by someone else)
        return True
    if message.kind not in (OutboxKind.GRANT, OutboxKind.REVOKE):
        return False
    grant, _ = _grant_payload(message.payload)
    grant_id = signing.grant_id(grant)
    state = client.grant_state(grant_id)
    if not (state.revoked if message.kind == OutboxKind.REVOKE else state.recorded):
        return False
    event_kind = "revoked" if message.kind == OutboxKind.REVOKE else "recorded"
    event = client.grant_event(grant_id, kind=event_kind, from_block=_deployment_block(client))
    if event is None:  # the node no longer serves logs that old: the state is what counts
        _finish(message, OutboxStatus.CONFIRMED, report)
        return True
    if client.block_number() - event.block + 1 < _required_confirmations():
        report.waiting += 1  # deep enough on a later pass
        return True
    _finish(message, OutboxStatus.CONFIRMED, report, tx_hash=event.tx, block=event.block)
    return True


def _settle_refusal(client: ChainClient, message: OutboxMessage, reason: str, report: RelayReport) -> None:
    # GrantExists / GrantAlreadyRevoked mean "already done", but an already recorded grant that has since
    # expired reverts GrantExpired first: the chain state, not the revert name, decides.
    if not _settle_from_chain_state(client, message, report):
        _finish(message, OutboxStatus.FAILED, report, error=reason or "Reverted")
