"""Anchoring the access log on chain: what is anchored, when, and what the chain's answer changes.

What is anchored: one RFC 6962 Merkle root over the leaves of a run of whole, consecutive checkpoints,
sent as `anchor(root, size)` with size = last_seq + 1, the number of entries anchored from the start of
the log. Each anchor's range therefore starts where the previous anchor on chain ended, so the ranges
can be read off the chain alone, and the contract's running `anchorHead` shows a missing one.

Why a run of checkpoints and not each checkpoint's own root: checkpoints are sealed every few seconds
and can be small; one transaction per checkpoint would cost far more gas per entry than the log is worth,
and anchoring only some of them would leave the others uncovered (a checkpoint's root does not include
the one before it). Why not the root of the whole log: an inclusion proof into it needs sibling hashes
from the whole log (reading every leaf ever sealed for one proof); a run's proof needs only that run,
whose size is bounded by AUDIT_ANCHOR_ENTRIES + AUDIT_CHECKPOINT_ENTRIES.

When: as soon as AUDIT_ANCHOR_ENTRIES sealed entries wait, or when the oldest waiting checkpoint is
AUDIT_ANCHOR_SECONDS old. A backlog becomes several anchors of at least AUDIT_ANCHOR_ENTRIES each.
The anchor row and its outbox message are written in one transaction; the relay sends it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.merkle import HASH_BYTES, merkle_root
from audit.models import AccessLogAnchor, AccessLogCheckpoint, AnchorStatus
from audit.signing import audit_key, checkpoint_message, signature_valid
from healthledger.errors import AccessLogTampered
from ledger.outbox import outbox_enqueue

logger = logging.getLogger(__name__)

OUTBOX_KIND = "anchor"


@dataclass(frozen=True)
class _Waiting:
    id: int
    first_seq: int
    last_seq: int
    created_at: datetime

    @property
    def size(self) -> int:
        return self.last_seq - self.first_seq + 1


def anchor_next_seq() -> int:
    """The first seq no live (pending or anchored) anchor covers yet."""
    last = AccessLogAnchor.objects.exclude(status=AnchorStatus.FAILED).order_by("-last_seq").first()
    return last.last_seq + 1 if last is not None else 0


def _waiting_checkpoints(start: int, *, limit: int) -> list[_Waiting]:
    rows = (
        AccessLogCheckpoint.objects.filter(first_seq__gte=start)
        .order_by("first_seq")
        .values_list("id", "first_seq", "last_seq", "created_at")[:limit]
    )
    return [_Waiting(*row) for row in rows]


def _choose(waiting: list[_Waiting], *, start: int, entries: int) -> list[_Waiting]:
    """The shortest run of consecutive checkpoints from `start` holding at least `entries` entries (or all)."""
    chosen: list[_Waiting] = []
    expected, total = start, 0
    for checkpoint in waiting:
        if checkpoint.first_seq != expected:
            # The sealer hands out seqs densely; a hole means rows were removed. Never anchor across it.
            raise AccessLogTampered(f"cannot anchor: no checkpoint starts at seq {expected}; run verify_access_log")
        chosen.append(checkpoint)
        expected, total = checkpoint.last_seq + 1, total + checkpoint.size
        if total >= entries:
            break
    return chosen


def range_leaves(*, first_seq: int, last_seq: int) -> tuple[list[bytes], list[AccessLogCheckpoint]]:
    """The leaves of the checkpoints that exactly tile first_seq..last_seq, and those checkpoints.

    Raises AccessLogTampered when the checkpoints do not tile the range or a leaf list has the wrong length.
    """
    checkpoints = list(
        AccessLogCheckpoint.objects.filter(first_seq__gte=first_seq, last_seq__lte=last_seq).order_by("first_seq")
    )
    leaves: list[bytes] = []
    expected = first_seq
    for checkpoint in checkpoints:
        blob = bytes(checkpoint.leaves)
        if checkpoint.first_seq != expected or len(blob) != HASH_BYTES * checkpoint.size:
            raise AccessLogTampered(f"checkpoints do not cover seq {expected} as sealed")
        leaves.extend(blob[i : i + HASH_BYTES] for i in range(0, len(blob), HASH_BYTES))
        expected = checkpoint.last_seq + 1
    if expected != last_seq + 1:
        raise AccessLogTampered(f"checkpoints do not cover seq {expected}..{last_seq}")
    return leaves, checkpoints


def _check_signed(checkpoints: list[AccessLogCheckpoint], leaves: list[bytes], start: int) -> None:
    """Anchor only what the audit key signed: each checkpoint's leaves give its root, and the signature holds."""
    key = audit_key()
    for checkpoint in checkpoints:
        own = leaves[checkpoint.first_seq - start : checkpoint.last_seq - start + 1]
        root, prev_root = bytes(checkpoint.root), bytes(checkpoint.prev_root)
        message = checkpoint_message(
            first_seq=checkpoint.first_seq,
            last_seq=checkpoint.last_seq,
            root=root,
            prev_root=prev_root,
            created_at=checkpoint.created_at,
        )
        if merkle_root(own) != root or not signature_valid(message, bytes(checkpoint.signature), public=key.public):
            raise AccessLogTampered(f"checkpoint {checkpoint.pk} does not verify; not anchoring it")


def _anchor_next(*, entries: int, max_age: timedelta, force: bool, now: datetime) -> AccessLogAnchor | None:
    start = anchor_next_seq()
    chosen = _choose(_waiting_checkpoints(start, limit=entries), start=start, entries=entries)
    if not chosen:
        return None
    total = sum(checkpoint.size for checkpoint in chosen)
    if not (force or total >= entries or chosen[0].created_at <= now - max_age):
        return None
    last = chosen[-1]
    leaves, checkpoints = range_leaves(first_seq=start, last_seq=last.last_seq)
    _check_signed(checkpoints, leaves, start)
    root = merkle_root(leaves)
    try:
        with transaction.atomic():
            anchor = AccessLogAnchor.objects.create(
                checkpoint_id=last.id, first_seq=start, last_seq=last.last_seq, root=root, created_at=now
            )
            # ref is the anchor row, not the checkpoint: a range refused by the chain is anchored again
            # by a new row, which needs a new outbox key.
            outbox_enqueue(
                kind=OUTBOX_KIND, ref=str(anchor.pk), payload={"root": "0x" + root.hex(), "size": anchor.size}
            )
    except IntegrityError:
        # Another anchorer (an overlapping beat tick) took this range first: the live-range
        # constraints refused our copy, and there is nothing left for this run to do.
        logger.info("access-log anchor for seq %d.. already taken by another run", start)
        return None
    logger.info("access log anchor %d queued: seq %d..%d", anchor.pk, anchor.first_seq, anchor.last_seq)
    return anchor


def access_log_anchor(*, force: bool = False, now: datetime | None = None) -> list[AccessLogAnchor]:
    """Queue anchors for the sealed checkpoints that are due (see the module docstring); returns them.

    `force` anchors whatever is sealed and waiting, however little and however recent (operators, tests).
    Idempotent: a second run finds nothing due. Each anchor is its own short transaction.
    """
    entries = settings.AUDIT_ANCHOR_ENTRIES
    max_age = timedelta(seconds=settings.AUDIT_ANCHOR_SECONDS)
    when = now or timezone.now()
    made: list[AccessLogAnchor] = []
    while (anchor := _anchor_next(entries=entries, max_age=max_age, force=force, now=when)) is not None:
        made.append(anchor)
    return made


def anchor_confirmed(*, anchor_id: int, tx_hash: str, block_number: int | None) -> AccessLogAnchor | None:
    """Outbox handler: the anchor is on chain. Idempotent (a second confirmation writes the same values)."""
    anchor = AccessLogAnchor.objects.select_for_update().filter(pk=anchor_id).first()
    if anchor is None:
        return None
    anchor.status = AnchorStatus.ANCHORED
    anchor.tx_hash = tx_hash
    anchor.block_number = block_number
    anchor.anchored_at = anchor.anchored_at or timezone.now()
    anchor.save(update_fields=["status", "tx_hash", "block_number", "anchored_at"])
    return anchor


def anchor_lost(*, anchor_id: int) -> None:
    """Outbox handler: the block holding the anchor is gone from the chain; pending until it lands again.

    The outbox sends the same bytes again (the root and size in its payload), so the anchor that lands is
    exactly this one; until it does, its range is not counted as anchored.
    """
    AccessLogAnchor.objects.filter(pk=anchor_id, status=AnchorStatus.ANCHORED).update(
        status=AnchorStatus.PENDING, tx_hash="", block_number=None
    )
    logger.warning("access-log anchor %s lost from the chain; waiting for it to land again", anchor_id)


def anchor_failed(*, anchor_id: int, error: str) -> bool:
    """Outbox handler: the anchor will never be on chain; the next anchoring run covers its range again.

    Returns whether a pending anchor was marked failed.
    """
    changed = AccessLogAnchor.objects.filter(pk=anchor_id, status=AnchorStatus.PENDING).update(
        status=AnchorStatus.FAILED
    )
    if changed:
        logger.warning("access-log anchor %s failed: %s", anchor_id, error[:80])
    return bool(changed)
