"""The access log's services: append (in the caller's transaction), seal, prove, verify.

Appends are cheap and take no lock; a single sealer later gives committed entries a
dense seq and covers them with a signed RFC 6962 Merkle checkpoint.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from audit.leaves import SEQ, rows_leaves, sealed_rows
from audit.merkle import inclusion_path, merkle_root, split_leaves, verify_inclusion_path
from audit.models import AccessLogCheckpoint, AccessLogEntry, AccessLogSealState, Outcome
from audit.signing import audit_key, checkpoint_message, checkpoint_sign, signature_valid
from audit.verification import Problem, VerificationReport, access_log_verify
from healthledger.errors import AccessLogTampered, IntegrityFailure, ResourceNotFound
from healthledger.lib.db import prepared_cursor

__all__ = [
    "InclusionProof",
    "LogEvent",
    "Problem",
    "VerificationReport",
    "access_log_append",
    "access_log_append_many",
    "access_log_proof",
    "access_log_seal",
    "access_log_verify",
    "verify_inclusion",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogEvent:
    """What one access-log entry says. `actor` is pseudonymous ("user:17", "job:<id>", "system:import")."""

    actor: str
    action: str
    outcome: str
    patient_ref: uuid.UUID | None = None
    purpose: str = ""
    grant_ref: str = ""
    resource_ids: Sequence[str] = field(default_factory=tuple)
    query: str = ""
    job_id: str = ""
    reason: str = ""
    break_glass: bool = False


def _require_transaction() -> None:
    # The entry must commit or roll back with the operation it records: a read
    # that is not logged, or a logged read that did not happen, is never allowed.
    if not connection.in_atomic_block:
        raise RuntimeError("access-log entries must be appended inside the operation's transaction.atomic()")


def _row(event: LogEvent, at: datetime) -> AccessLogEntry:
    if event.outcome not in (Outcome.PERMIT, Outcome.DENY):
        raise ValueError(f"outcome must be permit or deny, not {event.outcome!r}")
    return AccessLogEntry(
        at=at,
        actor=event.actor,
        patient_ref=event.patient_ref,
        action=event.action,
        purpose=event.purpose,
        grant_ref=event.grant_ref,
        resource_ids=list(event.resource_ids),
        query=event.query,
        outcome=event.outcome,
        job_id=event.job_id,
        reason=event.reason,
        break_glass=event.break_glass,
    )


_INSERT_COLUMNS = (
    "at",
    "actor",
    "patient_ref",
    "action",
    "purpose",
    "grant_ref",
    "resource_ids",
    "query",
    "outcome",
    "job_id",
    "reason",
    "break_glass",
)
_INSERT_SQL: dict[str, str] = {}
_PATIENT_REF = AccessLogEntry._meta.get_field("patient_ref")


def _insert_sql(db: BaseDatabaseWrapper) -> str:
    sql = _INSERT_SQL.get(db.vendor)
    if sql is None:
        quote = db.ops.quote_name
        values = ", ".join(
            "%s::jsonb" if c == "resource_ids" and db.vendor == "postgresql" else "%s" for c in _INSERT_COLUMNS
        )
        sql = _INSERT_SQL[db.vendor] = (
            f"INSERT INTO {quote(AccessLogEntry._meta.db_table)} ({', '.join(quote(c) for c in _INSERT_COLUMNS)})"  # noqa: S608
            f" VALUES ({values}) RETURNING id"
        )
    return sql


def access_log_insert(*, event: LogEvent, at: datetime | None = None) -> int:
    """Append one entry in the current transaction and return its id: the gate's hot path.

    One cached INSERT with values prepared exactly as the model field would store them
    (the sealer hashes the stored text: `resource_ids` as json.dumps writes it, `at` as
    Django adapts it), without the ORM's per-call SQL compilation, which cost ten times
    the insert itself.
    """
    _require_transaction()
    return _insert(event, at)


def access_log_commit(*, event: LogEvent) -> int:
    """Append one entry as a transaction of its own: on disk when this returns (outside any transaction).

    For a read that has already decrypted in memory and must not let one byte out before its
    entry is committed: one autocommit INSERT, no BEGIN/COMMIT round trips. Inside an enclosing
    transaction (a test, a caller's atomic block) the entry commits with it instead.
    """
    return _insert(event, None)


def _resource_ids_text(resource_ids: Sequence[str], db: BaseDatabaseWrapper) -> str:
    """The entry's resource list as the INSERT sends it. PostgreSQL parses it into jsonb, which prints the
    canonical form (audit.leaves) whatever the spacing: orjson's compact text, five times quicker for a
    searched page of a hundred. SQLite stores the text as sent, so it gets json.dumps's, the canonical form."""
    if db.vendor == "postgresql":
        return orjson.dumps(list(resource_ids)).decode()
    return json.dumps(list(resource_ids))


def _insert(event: LogEvent, at: datetime | None) -> int:
    if event.outcome not in (Outcome.PERMIT, Outcome.DENY):
        raise ValueError(f"outcome must be permit or deny, not {event.outcome!r}")
    db = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` is a lookup of this thread's connection
    params = [
        db.ops.adapt_datetimefield_value(at or timezone.now()),
        event.actor,
        _PATIENT_REF.get_db_prep_value(event.patient_ref, db),
        event.action,
        event.purpose,
        event.grant_ref,
        _resource_ids_text(event.resource_ids, db),
        event.query,
        event.outcome,
        event.job_id,
        event.reason,
        event.break_glass,
    ]
    with prepared_cursor() as cursor:
        cursor.execute(_insert_sql(db), params)
        return int(cursor.fetchone()[0])


def access_log_append(*, event: LogEvent) -> AccessLogEntry:
    """Append one entry in the current transaction and return it."""
    at = timezone.now()
    entry = _row(event, at)
    entry.id = access_log_insert(event=event, at=at)
    entry._state.adding = False
    entry._state.db = connection.alias
    return entry


def access_log_append_many(*, events: Iterable[LogEvent]) -> list[AccessLogEntry]:
    """Append several entries in one statement, in the current transaction."""
    _require_transaction()
    now = timezone.now()
    rows = [_row(event, now) for event in events]
    return AccessLogEntry.objects.bulk_create(rows, batch_size=1000)


# --- Sealing ------------------------------------------------------------------------

_ENTRY_TABLE = AccessLogEntry._meta.db_table
# One statement hands out dense seqs to the oldest unsealed rows, in id order. Rows that
# commit later (even with a lower id) are simply not visible yet and get a later seq.
_ASSIGN_SEQ_SQL = (
    f"UPDATE {_ENTRY_TABLE} SET seq = picked.new_seq FROM ("  # noqa: S608 - fixed table name
    f" SELECT id, %s + row_number() OVER (ORDER BY id) - 1 AS new_seq"
    f" FROM {_ENTRY_TABLE} WHERE seq IS NULL ORDER BY id LIMIT %s"
    f") AS picked WHERE {_ENTRY_TABLE}.id = picked.id"
)


def _seal_state_lock() -> AccessLogSealState:
    # The race this lock prevents: two sealers (overlapping beat ticks, or the command
    # run beside a worker) reading the same next_seq and giving out the same seq numbers,
    # or chaining two checkpoints to the same predecessor. The singleton row is the lock,
    # held until commit. The INSERT ... ON CONFLICT DO NOTHING makes the row exist without
    # a get_or_create race; on SQLite it is also the first write, which takes the
    # database's write lock before anything is read (select_for_update is a no-op there).
    AccessLogSealState.objects.bulk_create([AccessLogSealState(id=1)], ignore_conflicts=True)
    return AccessLogSealState.objects.select_for_update().get(pk=1)


def _seal_next(*, limit: int) -> AccessLogCheckpoint | None:
    with transaction.atomic():
        state = _seal_state_lock()
        first = state.next_seq
        with connection.cursor() as cursor:
            cursor.execute(_ASSIGN_SEQ_SQL, [first, limit])
            count = cursor.rowcount
        if count <= 0:
            return None
        last = first + count - 1
        rows = sealed_rows(first_seq=first, last_seq=last)
        if [row[SEQ] for row in rows] != list(range(first, last + 1)):
            # Only the sealer writes seq; anything else in our fresh range means the state row was reset.
            raise IntegrityFailure("access-log seal: seq range already in use; the seal state is inconsistent")
        leaves = rows_leaves(rows)
        root = merkle_root(leaves)
        prev_root = bytes(state.head_root)
        created_at = timezone.now()
        message = checkpoint_message(
            first_seq=first, last_seq=last, root=root, prev_root=prev_root, created_at=created_at
        )
        signature, fingerprint = checkpoint_sign(message)
        checkpoint = AccessLogCheckpoint.objects.create(
            first_seq=first,
            last_seq=last,
            root=root,
            prev_root=prev_root,
            leaves=b"".join(leaves),
            created_at=created_at,
            key_fingerprint=fingerprint,
            signature=signature,
        )
        state.next_seq = last + 1
        state.head_root = root
        state.save(update_fields=["next_seq", "head_root"])
    logger.debug("access log sealed seq %d..%d into checkpoint %d", first, last, checkpoint.pk)
    return checkpoint


def access_log_seal(*, max_entries: int | None = None) -> list[AccessLogCheckpoint]:
    """Seal every committed, unsealed entry into signed checkpoints of at most `max_entries` each.

    Each checkpoint is its own short transaction, so a backlog never holds the lock long
    and appends (which take no lock) go on meanwhile.
    """
    limit = max_entries or settings.AUDIT_CHECKPOINT_ENTRIES
    if limit < 1:
        raise ValueError("max_entries must be at least 1")
    made: list[AccessLogCheckpoint] = []
    while (checkpoint := _seal_next(limit=limit)) is not None:
        made.append(checkpoint)
    if made:
        logger.info("access log sealed %d entries into %d checkpoints", sum(c.size for c in made), len(made))
    return made


# --- Inclusion proofs ---------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    """Where one entry sits in a signed checkpoint, and the sibling hashes that lead to its root."""

    entry_id: int
    seq: int
    checkpoint_id: int
    leaf_index: int
    tree_size: int
    audit_path: tuple[bytes, ...]
    root: bytes
    # What a third party needs to check the root's signature with the audit public key.
    first_seq: int
    last_seq: int
    prev_root: bytes
    created_at: datetime
    key_fingerprint: str
    signature: bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "entry_id": self.entry_id,
            "seq": self.seq,
            "checkpoint_id": self.checkpoint_id,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "audit_path": [node.hex() for node in self.audit_path],
            "root": self.root.hex(),
            "checkpoint": {
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
                "prev_root": self.prev_root.hex(),
                "created_at": self.created_at.isoformat(),
                "key_fingerprint": self.key_fingerprint,
                "signature": self.signature.hex(),
            },
        }


def verify_inclusion(leaf_hash: bytes, proof: InclusionProof, *, root: bytes | None = None) -> bool:
    """RFC 9162 inclusion check of `leaf_hash` against `root` (an anchored root), else the proof's own root."""
    return verify_inclusion_path(leaf_hash, proof.leaf_index, proof.tree_size, proof.audit_path, root or proof.root)


def access_log_proof(*, entry: AccessLogEntry) -> InclusionProof:
    """An inclusion proof for a sealed entry, from its checkpoint's stored leaves.

    The checkpoint itself is checked first (leaves give its root, the audit key signed
    it), so a proof is never handed out against a root nobody signed.
    """
    if entry.seq is None:
        raise ResourceNotFound("this access-log entry is not sealed into a checkpoint yet")
    checkpoint = AccessLogCheckpoint.objects.filter(first_seq__lte=entry.seq, last_seq__gte=entry.seq).first()
    if checkpoint is None:
        raise AccessLogTampered(f"no checkpoint covers sealed seq {entry.seq}")
    leaves = split_leaves(bytes(checkpoint.leaves))
    root, prev_root, signature = bytes(checkpoint.root), bytes(checkpoint.prev_root), bytes(checkpoint.signature)
    message = checkpoint_message(
        first_seq=checkpoint.first_seq,
        last_seq=checkpoint.last_seq,
        root=root,
        prev_root=prev_root,
        created_at=checkpoint.created_at,
    )
    key = audit_key()
    if (
        len(leaves) != checkpoint.size
        or merkle_root(leaves) != root
        or checkpoint.key_fingerprint != key.fingerprint
        or not signature_valid(message, signature, public=key.public)
    ):
        raise AccessLogTampered(f"checkpoint {checkpoint.pk} does not verify; run verify_access_log")
    index = entry.seq - checkpoint.first_seq
    return InclusionProof(
        entry_id=entry.pk,
        seq=entry.seq,
        checkpoint_id=checkpoint.pk,
        leaf_index=index,
        tree_size=len(leaves),
        audit_path=tuple(inclusion_path(leaves, index)),
        root=root,
        first_seq=checkpoint.first_seq,
        last_seq=checkpoint.last_seq,
        prev_root=prev_root,
        created_at=checkpoint.created_at,
        key_fingerprint=checkpoint.key_fingerprint,
        signature=signature,
    )
