"""The relay pass: check sent messages, sign and broadcast pending ones, rebroadcast what a node lost."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from healthledger.errors import ChainError, ChainUnavailable
from ledger import signing
from ledger.client import ChainClient, ContractReverted, NonceConsumed, chain_client
from ledger.models import OutboxKind, OutboxMessage, OutboxStatus
from ledger.outbox.nonces import _sign_and_persist
from ledger.outbox.payloads import _contract_call, _grant_payload
from ledger.outbox.reorg import _reopen_lost
from ledger.outbox.report import RelayReport, _back_off
from ledger.outbox.settle import _finish, _required_confirmations, _settle_from_chain_state, _settle_refusal

logger = logging.getLogger(__name__)


def _broadcast(client: ChainClient, message: OutboxMessage, report: RelayReport) -> bool:
    """Send the message's committed bytes. ChainUnavailable propagates: the pass stops and backs off."""
    try:
        client.broadcast(bytes(message.raw_tx or b""), tx_hash=message.tx_hash)
    except NonceConsumed:
        _nonce_taken(client, message, report)
        return False
    except ChainUnavailable:
        raise
    except ChainError as exc:  # a refusal that may pass: a nonce gap, fees
        report.deferred += _back_off([message.pk], error=f"{type(exc).__name__}: {exc.message[:120]}")
        return False
    now = timezone.now()
    OutboxMessage.objects.filter(pk=message.pk, status=OutboxStatus.SENT, tx_hash=message.tx_hash).update(
        broadcast_at=now, next_attempt_at=now, last_error=""
    )
    message.broadcast_at = now
    return True


def _prepare(client: ChainClient, message: OutboxMessage, report: RelayReport) -> dict[str, Any] | None:
    """Estimate the call; a revert settles the message (no nonce is burnt on a doomed transaction)."""
    try:
        call = _contract_call(client, message)
    except ValueError:
        _finish(message, OutboxStatus.FAILED, report, error="InvalidPayload")
        return None
    try:
        return client.prepare(call)
    except ContractReverted as exc:
        _settle_refusal(client, message, exc.reason, report)
    except ChainUnavailable:
        raise
    except ChainError as exc:
        report.deferred += _back_off([message.pk], error=f"{type(exc).__name__}: {exc.message[:120]}")
    return None


def _nonce_taken(client: ChainClient, message: OutboxMessage, report: RelayReport) -> None:
    """The chain used this message's nonce for another transaction (something else sent with the relayer key):
    its bytes can never be mined, so signing it again with a fresh nonce cannot make a second write."""
    logger.warning("outbox message %s: nonce %s was used by another transaction", message.pk, message.nonce)
    if _settle_from_chain_state(client, message, report):
        return
    tx = _prepare(client, message, report)
    if tx is None:
        return
    resigned = _sign_and_persist(client, message, tx, replaces=message.tx_hash)
    if resigned is not None:
        report.sent += 1
        _broadcast(client, resigned, report)


def _key_awaited(message: OutboxMessage) -> str:
    """The key whose registration must be on chain before this message can land: a grant's signer, the key a
    rotation replaces, the key a reset replaces."""
    try:
        if message.kind == OutboxKind.GRANT:
            return _grant_payload(message.payload)[0].patient
        if message.kind in (OutboxKind.KEY, OutboxKind.KEY_RESET):
            previous = signing.KeyChange.from_payload(message.payload).previous
            return "" if previous == signing.ZERO_ADDRESS else previous
    except ValueError:
        return ""  # refused as InvalidPayload by _prepare
    return ""


def _key_on_its_way(client: ChainClient, key: str) -> bool:
    """True while the key's own registration is queued, or sent and not yet visible on chain."""
    statuses = (
        OutboxMessage.objects.filter(kind__in=[OutboxKind.KEY, OutboxKind.KEY_RESET_DONE], ref=key)
        .exclude(status__in=[OutboxStatus.CONFIRMED, OutboxStatus.FAILED])
        .values_list("status", flat=True)
    )
    open_statuses = set(statuses)
    if OutboxStatus.PENDING in open_statuses:
        return True
    return bool(open_statuses) and client.account_of(key) == bytes(32)


def _send(client: ChainClient, message: OutboxMessage, report: RelayReport) -> OutboxMessage | None:
    """A pending message: estimate, sign with the next nonce, commit, then broadcast."""
    if (
        message.kind == OutboxKind.REVOKE
        and OutboxMessage.objects.filter(
            kind=OutboxKind.GRANT, ref=message.ref, status__in=[OutboxStatus.PENDING, OutboxStatus.SENT]
        ).exists()
    ):
        report.waiting += 1  # a revocation of a grant still on its way would revert as UnknownGrant
        return None
    waits_for = _key_awaited(message)
    if waits_for and _key_on_its_way(client, waits_for):
        report.waiting += 1  # a grant or rotation by a key not registered yet would revert (KeyNotCurrent)
        return None
    tx = _prepare(client, message, report)
    if tx is None:
        return None
    signed = _sign_and_persist(client, message, tx)
    if signed is None:
        return None
    report.sent += 1
    _broadcast(client, signed, report)
    return signed


def _check(client: ChainClient, message: OutboxMessage, report: RelayReport) -> None:
    """A sent message: confirm it once deep enough, settle a mined revert, resend its bytes if the node lost them."""
    if message.chain_id != client.chain_id:
        logger.warning("outbox message %s was signed for chain %s, not this one", message.pk, message.chain_id)
        report.waiting += 1
        return
    assert message.nonce is not None  # a sent message always has one (database constraint)
    # Read before the receipt: once the count passes our nonce, a missing receipt means another transaction.
    mined_count = client.transaction_count("latest", address=message.sender or None)
    receipt = client.receipt(message.tx_hash)
    if receipt is None:
        if message.nonce < mined_count:
            _nonce_taken(client, message, report)
            return
        stale = message.broadcast_at is None or (
            timezone.now() - message.broadcast_at >= timedelta(seconds=settings.OUTBOX_REBROADCAST_SECONDS)
        )
        if stale and _broadcast(client, message, report):
            report.rebroadcast += 1
        report.waiting += 1
        return
    if receipt.confirmations < _required_confirmations():
        report.waiting += 1
        return
    if receipt.succeeded:
        _finish(message, OutboxStatus.CONFIRMED, report, block=receipt.block)
    else:
        _settle_refusal(client, message, "Reverted", report)


def outbox_relay(*, limit: int = 50) -> RelayReport:
    """One pass: check due sent messages (oldest nonce first, so resent bytes fill gaps in order), send due
    pending ones, then check those just sent. When the node is down, every due message not yet handled in
    this pass backs off (one probe per pass, not one timeout per message)."""
    report = RelayReport()
    now = timezone.now()
    due = OutboxMessage.objects.filter(next_attempt_at__lte=now)
    sent = list(due.filter(status=OutboxStatus.SENT).order_by("nonce", "id")[:limit])
    pending = list(due.filter(status=OutboxStatus.PENDING).order_by("id")[:limit])
    untouched = {message.pk for message in sent + pending}
    try:
        client = chain_client()
        _reopen_lost(client, report)  # what it reopens is due now, and checked on the next pass
        for message in sent:
            _guarded(_check, client, message, report)
            untouched.discard(message.pk)
        fresh: list[OutboxMessage] = []
        for message in pending:
            signed = _guarded(_send, client, message, report)
            untouched.discard(message.pk)
            if signed is not None:
                fresh.append(signed)
        for message in fresh:  # an instantly mining node has the receipt already: settle it in this pass
            message.refresh_from_db()
            if message.status == OutboxStatus.SENT and message.broadcast_at is not None:
                _guarded(_check, client, message, report)
    except ChainUnavailable as exc:
        report.unavailable = True
        report.deferred += _back_off(untouched, error=type(exc).__name__)
        logger.warning("outbox relay: chain unavailable; %d message(s) backed off", len(untouched))
    return report


def _guarded(
    step: Callable[[ChainClient, OutboxMessage, RelayReport], Any],
    client: ChainClient,
    message: OutboxMessage,
    report: RelayReport,
) -> Any:
    """Run one message's step; a chain error other than "node down" backs off that message only."""
    try:
        return step(client, message, report)
    except ChainUnavailable:
        raise
    except ChainError as exc:
        report.deferred += _back_off([message.pk], error=f"{type(exc).__name__}: {exc.message[:120]}")
        return None
