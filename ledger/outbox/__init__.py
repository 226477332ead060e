"""The outbox: every chain write is a row written in the same transaction as the change it records, and a relay
sends it, waits for confirmations, retries with backoff, manages the relayer's nonce, and never sends it twice.

Why it cannot send a write twice:
- one row per write: (kind, ref) is unique, and enqueueing it again returns the existing row;
- a row is signed once: nonce, raw bytes and hash are committed *before* the first broadcast, so a relay that
  dies between the two, or a node that was down, is repaired by sending the same bytes again. One nonce can be
  mined once, so resending can never make a second transaction;
- the one exception proves itself first: when the chain shows the row's nonce used by a *different*
  transaction, the row's bytes can never be mined, and only then is it signed again with a new nonce.

A chain that forgets blocks (a node killed before it wrote its last blocks, a state file rolled back, a
reorganisation) is a vanished receipt: every pass first asks the chain how many transactions of the relayer
account are mined, and any message confirmed with a nonce at or above that count was lost with its block. It
goes back to `sent` with the same bytes (patients' signatures and anchor roots are in the payload, so the
write is replayed exactly), its `on_reorged` handler takes the confirmed state back in the same transaction,
and the next check rebroadcasts it. A gap in the relayer's nonces that no stored message can fill is not
waited on forever: the next signature takes the lowest free nonce from the chain's count.

Higher layers (consent, audit) learn the outcome through handlers they register in their AppConfig.ready();
ledger never imports them. Handlers run in the transaction that marks the message confirmed, failed or lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from healthledger.errors import ChainError, ChainUnavailable
from ledger import signing
from ledger.client import ChainClient, ContractReverted, NonceConsumed, chain_client
from ledger.models import OutboxKind, OutboxMessage, OutboxStatus, RelayerState
from ledger.selectors import deployment_current

logger = logging.getLogger(__name__)

Handler = Callable[[OutboxMessage], None]


@dataclass(frozen=True)
class _Handlers:
    on_confirmed: Handler
    on_failed: Handler | None
    on_reorged: Handler | None = None


_HANDLERS: dict[str, _Handlers] = {}


def register_outbox_handler(
    kind: str, *, on_confirmed: Handler, on_failed: Handler | None = None, on_reorged: Handler | None = None
) -> None:
    """Call `on_confirmed(message)` / `on_failed(message)` when a message of this kind settles, and
    `on_reorged(message)` when the block that confirmed it is gone from the chain (it will confirm again).

    Registering a kind again replaces its handlers (one owner per kind).
    """
    if kind not in OutboxKind.values:
        raise ValueError(f"unknown outbox kind {kind!r}")
    _HANDLERS[kind] = _Handlers(on_confirmed=on_confirmed, on_failed=on_failed, on_reorged=on_reorged)


@dataclass
class RelayReport:
    """What one relay pass did."""

    sent: int = 0  # signed and sent for the first time
    rebroadcast: int = 0  # the same bytes sent again
    confirmed: int = 0
    failed: int = 0
    waiting: int = 0  # sent and not confirmed yet, or held behind another message
    deferred: int = 0  # backed off after an error
    reorged: int = 0  # confirmed, then lost with its block: back to sent, to be rebroadcast
    unavailable: bool = False  # the pass stopped because the chain node was down

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


# --- Payloads -----------------------------------------------------------------------------


def _hex_bytes(value: object, length: int) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("expected 0x-prefixed hex")
    raw = bytes.fromhex(value[2:])
    if len(raw) != length:
        raise ValueError(f"expected {length} bytes")
    return raw


def _grant_payload(payload: dict[str, Any]) -> tuple[signing.Grant, signing.Signature]:
    try:
        fields = payload["grant"]
        grant = signing.Grant(
            patient=fields["patient"],
            grantee=fields["grantee"],
            scope_commitment=_hex_bytes(fields["scope_commitment"], 32),
            not_before=int(fields["not_before"]),
            not_after=int(fields["not_after"]),
            salt=_hex_bytes(fields["salt"], 32),
        )
        return grant, signing.Signature.from_bytes(_hex_bytes(payload["signature"], 65))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed grant payload ({type(exc).__name__})") from exc


def _anchor_payload(payload: dict[str, Any]) -> tuple[bytes, int]:
    try:
        root, size = _hex_bytes(payload["root"], 32), payload["size"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed anchor payload ({type(exc).__name__})") from exc
    if not isinstance(size, int) or not 0 < size < 2**64:
        raise ValueError("malformed anchor payload (size)")
    return root, size


def _account_payload(payload: dict[str, Any]) -> tuple[bytes, signing.Signature | None]:
    """A reset's cancellation (account and the registered key's signature) or completion (account only)."""
    try:
        account = _hex_bytes(payload["account"], 32)
        text = payload.get("signature") or ""
        return account, signing.Signature.from_bytes(_hex_bytes(text, 65)) if text else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed key payload ({type(exc).__name__})") from exc


def _check_payload(kind: str, payload: dict[str, Any]) -> None:
    if kind == OutboxKind.ANCHOR:
        _anchor_payload(payload)
    elif kind in (OutboxKind.KEY, OutboxKind.KEY_RESET):
        signing.KeyChange.from_payload(payload)
    elif kind == OutboxKind.KEY_RESET_CANCEL:
        if _account_payload(payload)[1] is None:
            raise ValueError("a cancellation carries the registered key's signature")
    elif kind == OutboxKind.KEY_RESET_DONE:
        _account_payload(payload)
    else:
        _grant_payload(payload)


def _contract_call(client: ChainClient, message: OutboxMessage) -> Any:
    if message.kind == OutboxKind.ANCHOR:
        return client.anchor_call(*_anchor_payload(message.payload))
    if message.kind == OutboxKind.KEY:
        return client.key_call(signing.KeyChange.from_payload(message.payload))
    if message.kind == OutboxKind.KEY_RESET:
        return client.key_reset_call(signing.KeyChange.from_payload(message.payload))
    if message.kind in (OutboxKind.KEY_RESET_CANCEL, OutboxKind.KEY_RESET_DONE):
        account, signature = _account_payload(message.payload)
        if signature is None:
            return client.key_reset_complete_call(account)
        return client.key_reset_cancel_call(account, signature)
    grant, signature = _grant_payload(message.payload)
    if message.kind == OutboxKind.GRANT:
        return client.grant_call(grant, signature)
    return client.revoke_call(grant, signature)


# --- Enqueue ------------------------------------------------------------------------------


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


# --- Backoff ------------------------------------------------------------------------------


def outbox_backoff(*, attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones: BASE * 2**(attempts - 1), capped at MAX."""
    base, cap = settings.OUTBOX_BACKOFF_BASE_SECONDS, settings.OUTBOX_BACKOFF_MAX_SECONDS
    return timedelta(seconds=min(cap, base * 2 ** min(max(attempts, 1) - 1, 32)))


def _back_off(ids: Iterable[int], *, error: str) -> int:
    now = timezone.now()
    count = 0
    with transaction.atomic():
        for message in OutboxMessage.objects.select_for_update().filter(
            pk__in=list(ids), status__in=[OutboxStatus.PENDING, OutboxStatus.SENT]
        ):
            message.attempts += 1
            message.last_attempt_at = now
            message.next_attempt_at = now + outbox_backoff(attempts=message.attempts)
            message.last_error = error[:200]
            message.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at", "last_error"])
            count += 1
    return count


# --- Settling -----------------------------------------------------------------------------


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
            handlers = _HANDLERS.get(message.kind)
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


# --- Signing and sending ------------------------------------------------------------------


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
            handlers = _HANDLERS.get(message.kind)
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


# --- The pass -----------------------------------------------------------------------------


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
