"""Verifying the access log against its signed checkpoints, and naming the first bad entry.

For each checkpoint, in seq order: its range follows the previous one (else `gap`), its
leaves give its root and it chains to the previous root (else `checkpoint-mismatch`),
the configured audit key signed it (else `bad-signature`). Then the entries in its range
are read straight from the database (raw rows, one query per checkpoint) and their leaf
hashes compared with the checkpoint's. On the first difference the position is
classified: a missing seq, or the next entry's leaf where this one's should be, means
`deleted`; a foreign leaf followed by this position's expected leaf means `inserted`; a
leaf that belongs elsewhere in the list means `reordered`; a leaf that matches nothing
means `edited`. Sealed rows outside every checkpoint are `inserted`.

The whole run reads one snapshot (REPEATABLE READ on PostgreSQL, one read transaction on
SQLite), so a seal committing meanwhile cannot look like tampering.

With `jobs` > 1 the per-entry work (reading the rows, hashing them, comparing with the signed
leaves) runs in that many forked worker processes, one checkpoint at a time, while this
process checks the checkpoints themselves. A worker only answers "this checkpoint's entries
are exactly as signed"; any other answer sends that checkpoint through the same sequential
check as with one job, which classifies the first bad entry. On PostgreSQL the workers read
the run's snapshot (pg_export_snapshot); on SQLite, rows under a sealed checkpoint never
change in normal operation, and new checkpoints beyond the run's list are not read.

Workers are only forked when this process runs no other thread: a fork copies every lock as it
is at that instant, and a lock held by another thread (a broker publish, a logging handler) stays
held for ever in the child. With other threads alive the run checks everything here, as with one
job. Each answer is also awaited for at most `WORKER_ANSWER_SECONDS`; a worker that has not
answered by then clears nothing, and every checkpoint not yet answered is checked here.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, connections, transaction

from audit.leaves import ID, SEQ, Row, rows_leaves, rows_outside, sealed_rows
from audit.merkle import HASH_BYTES, merkle_root
from audit.models import AccessLogCheckpoint, AccessLogEntry, AccessLogSealState
from audit.signing import AuditKey, audit_key, checkpoint_message, signature_valid

logger = logging.getLogger(__name__)

EDITED = "edited"
DELETED = "deleted"
INSERTED = "inserted"
REORDERED = "reordered"
CHECKPOINT_MISMATCH = "checkpoint-mismatch"
BAD_SIGNATURE = "bad-signature"
GAP = "gap"

_ZERO_ROOT = bytes(HASH_BYTES)
_MAX_SEQ = 2**63 - 1
_CHECKPOINT_TABLE = AccessLogCheckpoint._meta.db_table
# The longest wait for one worker's answer; hashing one checkpoint's entries takes milliseconds.
WORKER_ANSWER_SECONDS = 30.0


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the log: what kind, at which seq, which entry row (if it still exists)."""

    kind: str
    seq: int | None
    entry_id: int | None
    checkpoint_id: int | None
    detail: str

    def describe(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "the log"
        who = f"entry id {self.entry_id}" if self.entry_id is not None else "no entry row"
        cp = f", checkpoint {self.checkpoint_id}" if self.checkpoint_id is not None else ""
        return f"{self.kind} at {where} ({who}{cp}): {self.detail}"


@dataclass(frozen=True)
class VerificationReport:
    ok: bool
    entries_checked: int
    checkpoints_checked: int
    unsealed_entries: int
    seconds: float
    problem: Problem | None = None
    # Of entries_checked, how many worker processes found exactly as signed (jobs > 1).
    entries_checked_in_workers: int = 0

    @property
    def entries_per_second(self) -> float:
        return self.entries_checked / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Checkpoint:
    id: int
    first_seq: int
    last_seq: int
    root: bytes
    prev_root: bytes
    created_at: datetime
    key_fingerprint: str
    signature: bytes

    @property
    def size(self) -> int:
        return self.last_seq - self.first_seq + 1


@contextlib.contextmanager
def _snapshot() -> Iterator[None]:
    if connection.in_atomic_block:  # the caller's transaction already fixes what we see
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def access_log_verify(*, jobs: int = 1) -> VerificationReport:
    """Check every sealed entry and every checkpoint; report counts and the first problem found.

    `jobs` > 1 hashes entries in that many worker processes (the same result, sooner on a
    machine with the cores); an in-memory SQLite database is always checked in one process.
    """
    started = time.perf_counter()
    with _snapshot():
        entries, checkpoints, unsealed, problem, in_workers = _verify(audit_key(), jobs=jobs)
    return VerificationReport(
        ok=problem is None,
        entries_checked=entries,
        checkpoints_checked=checkpoints,
        unsealed_entries=unsealed,
        seconds=time.perf_counter() - started,
        problem=problem,
        entries_checked_in_workers=in_workers,
    )


def _verify(key: AuditKey, *, jobs: int = 1) -> tuple[int, int, int, Problem | None, int]:
    state_row = AccessLogSealState.objects.filter(pk=1).values_list("next_seq", "head_root").first()
    state = (state_row[0], bytes(state_row[1])) if state_row is not None else None
    checkpoints = [
        _Checkpoint(cid, first, last, bytes(root), bytes(prev), created, fingerprint, bytes(sig))
        for cid, first, last, root, prev, created, fingerprint, sig in AccessLogCheckpoint.objects.order_by(
            "first_seq"
        ).values_list("id", "first_seq", "last_seq", "root", "prev_root", "created_at", "key_fingerprint", "signature")
    ]
    unsealed = AccessLogEntry.objects.filter(seq__isnull=True).count()
    negative = rows_outside(first_seq=0, last_seq=_MAX_SEQ)
    if negative:
        return 0, 0, unsealed, _stray(negative[0]), 0
    entries = in_workers = 0
    expected_seq, prev_root = 0, _ZERO_ROOT
    with _entry_checks(checkpoints, jobs) as entries_as_signed:
        for position, checkpoint in enumerate(checkpoints):
            leaves_blob = _leaves_blob(checkpoint.id)
            problem = _check_checkpoint(
                checkpoint, leaves_blob, expected_seq=expected_seq, prev_root=prev_root, key=key
            )
            if problem is None:
                if entries_as_signed(position):
                    entries += checkpoint.size
                    in_workers += checkpoint.size
                else:
                    following = checkpoints[position + 1] if position + 1 < len(checkpoints) else None
                    checked, problem = _check_entries(checkpoint, leaves_blob, following)
                    entries += checked
            if problem is not None:
                return entries, position, unsealed, problem, in_workers
            expected_seq, prev_root = checkpoint.last_seq + 1, checkpoint.root
    problem = _check_tail(state, expected_seq=expected_seq, head_root=prev_root)
    return entries, len(checkpoints), unsealed, problem, in_workers


@contextlib.contextmanager
def _entry_checks(checkpoints: list[_Checkpoint], jobs: int) -> Iterator[Any]:
    """Yield position -> whether that checkpoint's entries are exactly as signed (False: check here, in order).

    With one job nothing is precomputed and every checkpoint is checked here. With more, the
    workers start on every checkpoint at once and the answers are awaited in order.
    """
    if jobs <= 1 or len(checkpoints) < 2 or (connection.vendor == "sqlite" and connection.is_in_memory_db()):  # type: ignore[attr-defined]
        yield lambda position: False
        return
    if threading.active_count() > 1:
        logger.info("access-log verification checks here: other threads are running, so no workers are forked")
        yield lambda position: False
        return
    snapshot = ""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot = cursor.fetchone()[0]
    tasks = [(snapshot, c.id, c.first_seq, c.last_seq) for c in checkpoints]
    # fork: the workers start at once with Django set up; each opens its own connection (_worker_start).
    pool = multiprocessing.get_context("fork").Pool(min(jobs, len(tasks)), initializer=_worker_start)
    answers = pool.imap(_entries_as_signed, tasks)
    stalled = False

    def answer(position: int) -> bool:
        nonlocal stalled
        if stalled:
            return False
        try:
            return bool(answers.next(timeout=WORKER_ANSWER_SECONDS))
        except multiprocessing.TimeoutError:
            stalled = True  # answers arrive in order: nothing after a stalled one can be used
            logger.warning(
                "access-log verification workers gave no answer in %.0f s; the rest is checked here",
                WORKER_ANSWER_SECONDS,
            )
            return False
        except Exception:
            # A worker that could not answer clears nothing: that checkpoint is checked here, in order.
            logger.warning("access-log verification worker failed on checkpoint %s", checkpoints[position].id)
            return False

    try:
        yield answer
    finally:
        pool.terminate()
        pool.join()


# The parent's database connections, inherited by a forked worker: kept referenced and never used,
# so that neither a close nor a garbage collection can send anything down the parent's socket.
_INHERITED: list[object] = []


def _worker_start() -> None:
    for alias in list(connections):
        if hasattr(connections._connections, alias):  # type: ignore[attr-defined]
            _INHERITED.append(connections[alias])
            del connections[alias]  # the next use builds a fresh wrapper with a connection of its own


def _entries_as_signed(task: tuple[str, int, int, int]) -> bool:
    """In a worker: whether the checkpoint's rows are every seq of its range, in order, each leaf as signed."""
    snapshot, checkpoint_id, first, last = task
    # SQLite: plain autocommit reads (WAL readers never wait; a transaction here would be IMMEDIATE and
    # queue behind the parent's). PostgreSQL: a read-only transaction on the parent's exported snapshot.
    context = transaction.atomic() if snapshot else contextlib.nullcontext()
    with context:
        if snapshot:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cursor.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
        leaves_blob = _stored_leaves(checkpoint_id)
        if leaves_blob is None:  # not visible to this connection (the caller's uncommitted transaction): check it there
            return False
        rows = sealed_rows(first_seq=first, last_seq=last)
        return _as_signed(rows, rows_leaves(rows), leaves_blob, first, last)


def _as_signed(rows: list[Row], computed: list[bytes], leaves_blob: bytes, first: int, last: int) -> bool:
    """The fast path: every position present once, in order, and every leaf as signed."""
    return b"".join(computed) == leaves_blob and [row[SEQ] for row in rows] == list(range(first, last + 1))


def _stored_leaves(checkpoint_id: int) -> bytes | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT leaves FROM {_CHECKPOINT_TABLE} WHERE id = %s", [checkpoint_id])  # noqa: S608
        found = cursor.fetchone()
    return bytes(found[0]) if found is not None else None


def _leaves_blob(checkpoint_id: int) -> bytes:
    """The leaves of a checkpoint this run listed (so it exists in the run's snapshot)."""
    leaves = _stored_leaves(checkpoint_id)
    assert leaves is not None, checkpoint_id
    return leaves


def _entry_id_at(seq: int) -> int | None:
    return AccessLogEntry.objects.filter(seq=seq).values_list("id", flat=True).first()


def _stray(row: Row) -> Problem:
    return Problem(INSERTED, row[SEQ], row[ID], None, "a sealed entry that no checkpoint covers")


def _checkpoint_problem(kind: str, checkpoint: _Checkpoint, detail: str, *, seq: int | None = None) -> Problem:
    at = checkpoint.first_seq if seq is None else seq
    return Problem(kind, at, _entry_id_at(at), checkpoint.id, detail)


def _check_checkpoint(
    checkpoint: _Checkpoint, leaves_blob: bytes, *, expected_seq: int, prev_root: bytes, key: AuditKey
) -> Problem | None:
    if checkpoint.first_seq != expected_seq:
        return _checkpoint_problem(
            GAP if checkpoint.first_seq > expected_seq else CHECKPOINT_MISMATCH,
            checkpoint,
            f"checkpoint starts at seq {checkpoint.first_seq}, the previous one ended at {expected_seq - 1}",
            seq=expected_seq,
        )
    if len(leaves_blob) != HASH_BYTES * checkpoint.size:
        return _checkpoint_problem(CHECKPOINT_MISMATCH, checkpoint, "the stored leaf list has the wrong length")
    leaves = [leaves_blob[i : i + HASH_BYTES] for i in range(0, len(leaves_blob), HASH_BYTES)]
    if merkle_root(leaves) != checkpoint.root:
        return _checkpoint_problem(CHECKPOINT_MISMATCH, checkpoint, "the stored leaves do not give the stored root")
    if checkpoint.key_fingerprint != key.fingerprint:
        return _checkpoint_problem(
            BAD_SIGNATURE,
            checkpoint,
            f"signed by key {checkpoint.key_fingerprint[:16]}, the configured audit key is {key.fingerprint[:16]}",
        )
    message = checkpoint_message(
        first_seq=checkpoint.first_seq,
        last_seq=checkpoint.last_seq,
        root=checkpoint.root,
        prev_root=checkpoint.prev_root,
        created_at=checkpoint.created_at,
    )
    if not signature_valid(message, checkpoint.signature, public=key.public):
        return _checkpoint_problem(BAD_SIGNATURE, checkpoint, "the signature does not match the checkpoint")
    if checkpoint.prev_root != prev_root:
        return _checkpoint_problem(CHECKPOINT_MISMATCH, checkpoint, "does not chain to the previous checkpoint's root")
    return None


def _check_entries(
    checkpoint: _Checkpoint, leaves_blob: bytes, following: _Checkpoint | None
) -> tuple[int, Problem | None]:
    first, last = checkpoint.first_seq, checkpoint.last_seq
    rows = sealed_rows(first_seq=first, last_seq=last)
    computed = rows_leaves(rows)
    if _as_signed(rows, computed, leaves_blob, first, last):
        return len(rows), None
    return _first_bad_entry(checkpoint, leaves_blob, rows, computed, following)


def _first_bad_entry(
    checkpoint: _Checkpoint, leaves_blob: bytes, rows: list[Row], computed: list[bytes], following: _Checkpoint | None
) -> tuple[int, Problem | None]:
    first, size = checkpoint.first_seq, checkpoint.size
    expected = [leaves_blob[i : i + HASH_BYTES] for i in range(0, len(leaves_blob), HASH_BYTES)]
    # The leaf just past this range (the next checkpoint's first), so a shift across the boundary still reads as one.
    if following is not None:
        expected.append(_leaves_blob(following.id)[:HASH_BYTES])
    for index, row in enumerate(rows):
        seq = row[SEQ]
        if seq != first + index:
            if seq > first + index:
                return index, Problem(DELETED, first + index, None, checkpoint.id, "no entry has this seq any more")
            return index, Problem(INSERTED, seq, row[ID], checkpoint.id, "a second entry with the same seq")
        if computed[index] == expected[index]:
            continue
        return index, _classify(checkpoint, index, row, rows, computed, expected)
    if len(rows) < size:
        missing = first + len(rows)
        return len(rows), Problem(DELETED, missing, None, checkpoint.id, "no entry has this seq any more")
    return len(rows), None  # pragma: no cover - the fast path would have passed


def _classify(
    checkpoint: _Checkpoint, index: int, row: Row, rows: list[Row], computed: list[bytes], expected: list[bytes]
) -> Problem:
    seq, entry_id, leaf = row[SEQ], row[ID], computed[index]
    after: bytes | None
    if index + 1 < len(rows):
        after = computed[index + 1]
    else:
        beyond = sealed_rows(first_seq=seq + 1, last_seq=seq + 1)
        after = rows_leaves(beyond)[0] if beyond else None
    known = set(expected)
    if leaf not in known:
        if after == expected[index]:
            return Problem(INSERTED, seq, entry_id, checkpoint.id, "an entry the checkpoint never had")
        return Problem(EDITED, seq, entry_id, checkpoint.id, "the entry differs from what was sealed")
    if index + 1 < len(expected) and leaf == expected[index + 1] and after != expected[index]:
        return Problem(
            DELETED, seq, None, checkpoint.id, "the entry sealed here is gone; later entries were renumbered"
        )
    return Problem(REORDERED, seq, entry_id, checkpoint.id, "the entry sealed at another position is here")


def _check_tail(state: tuple[int, bytes] | None, *, expected_seq: int, head_root: bytes) -> Problem | None:
    if state is not None:
        next_seq, state_root = state
        if next_seq > expected_seq:
            return Problem(
                GAP,
                expected_seq,
                _entry_id_at(expected_seq),
                None,
                f"the sealer handed out seq up to {next_seq - 1}; checkpoints end at {expected_seq - 1}",
            )
        if next_seq < expected_seq or state_root != head_root:
            return Problem(
                CHECKPOINT_MISMATCH, expected_seq - 1, None, None, "the seal state does not match the last checkpoint"
            )
    stray = rows_outside(first_seq=0, last_seq=expected_seq - 1)
    if stray:
        return _stray(stray[0])
    return None
