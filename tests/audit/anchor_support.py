"""Helpers for the anchoring tests: seal, anchor and relay a log, and rewrite history as an insider could."""

from __future__ import annotations

from django.db import transaction

from audit.anchoring import access_log_anchor
from audit.leaves import rows_leaves, sealed_rows
from audit.merkle import merkle_root
from audit.models import AccessLogAnchor, AccessLogCheckpoint, AccessLogEntry, AccessLogSealState
from audit.services import access_log_append_many, access_log_seal
from audit.signing import checkpoint_message, checkpoint_sign
from ledger.outbox import outbox_relay
from tests.audit.conftest import event


def seal(count: int, *, start: int = 0, per_checkpoint: int = 4) -> list[AccessLogEntry]:
    """Append `count` distinct entries and seal them; returns every sealed entry in seq order."""
    with transaction.atomic():
        access_log_append_many(events=[event(start + n) for n in range(count)])
    access_log_seal(max_entries=per_checkpoint)
    return list(AccessLogEntry.objects.filter(seq__isnull=False).order_by("seq"))


def anchor_and_relay() -> list[AccessLogAnchor]:
    """Queue every waiting checkpoint for anchoring, relay the outbox once, and return the fresh rows."""
    made = access_log_anchor(force=True)
    outbox_relay()
    return [AccessLogAnchor.objects.get(pk=anchor.pk) for anchor in made]


def rewrite_history(entry: AccessLogEntry, **changes: object) -> None:
    """Edit an entry and re-seal every checkpoint from its own on, signed with the audit key, as an insider
    holding the database and the audit key could: the database alone then verifies."""
    AccessLogEntry.objects.filter(pk=entry.pk).update(**changes)
    checkpoints = list(AccessLogCheckpoint.objects.order_by("first_seq"))
    prev_root = bytes(32)
    for checkpoint in checkpoints:
        if checkpoint.last_seq >= (entry.seq or 0):
            leaves = rows_leaves(sealed_rows(first_seq=checkpoint.first_seq, last_seq=checkpoint.last_seq))
            root = merkle_root(leaves)
            message = checkpoint_message(
                first_seq=checkpoint.first_seq,
                last_seq=checkpoint.last_seq,
                root=root,
                prev_root=prev_root,
                created_at=checkpoint.created_at,
            )
            signature, _ = checkpoint_sign(message)
            AccessLogCheckpoint.objects.filter(pk=checkpoint.pk).update(
                root=root, prev_root=prev_root, leaves=b"".join(leaves), signature=signature
            )
            prev_root = root
        else:
            prev_root = bytes(checkpoint.root)
    AccessLogSealState.objects.filter(pk=1).update(head_root=prev_root)
