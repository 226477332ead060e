"""Each kind of tampering is detected, with its kind and the exact first bad seq.

The log under test: 20 entries sealed 8 to a checkpoint (seqs 0-7, 8-15, 16-19).
Tampering goes straight to the database, as an attacker with SQL access would.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection
from django.db.models import F

from audit.leaves import entry_leaf_hash
from audit.merkle import merkle_root, split_leaves
from audit.models import AccessLogCheckpoint, AccessLogEntry, AccessLogSealState
from audit.services import access_log_seal, access_log_verify
from audit.signing import checkpoint_message, public_key_fingerprint
from tests.audit.conftest import append

SealedLog = Callable[..., list[AccessLogEntry]]
SHIFT = 1_000_000
ENTRY_TABLE = AccessLogEntry._meta.db_table


@pytest.fixture
def log(sealed_log: SealedLog) -> list[AccessLogEntry]:
    return sealed_log(20, per_checkpoint=8)


def problem_of(expected_ok: bool = False):  # type: ignore[no-untyped-def]
    report = access_log_verify()
    assert report.ok is expected_ok
    return report.problem


def shift_seqs(*, from_seq: int, by: int) -> None:
    # Two steps so no row ever collides with another on the unique seq (PostgreSQL checks row by row).
    AccessLogEntry.objects.filter(seq__gte=from_seq).update(seq=F("seq") + SHIFT)
    AccessLogEntry.objects.filter(seq__gte=SHIFT).update(seq=F("seq") - SHIFT + by)


def forge_row(seq: int, actor: str = "user:mallory") -> int:
    forged = AccessLogEntry.objects.create(
        seq=seq, at=AccessLogEntry.objects.first().at, actor=actor, action="records.read", outcome="permit"
    )
    return forged.pk


def test_a_clean_log_verifies(log: list[AccessLogEntry]) -> None:
    report = access_log_verify()
    assert report.ok is True
    assert report.problem is None
    assert (report.entries_checked, report.checkpoints_checked, report.unsealed_entries) == (20, 3, 0)


def test_an_empty_log_verifies(db: None) -> None:
    report = access_log_verify()
    assert (report.ok, report.entries_checked, report.checkpoints_checked) == (True, 0, 0)


def test_unsealed_entries_are_counted_not_failed(log: list[AccessLogEntry]) -> None:
    append(3, start=100)
    report = access_log_verify()
    assert (report.ok, report.entries_checked, report.unsealed_entries) == (True, 20, 3)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "user:999"),
        ("patient_ref", uuid.UUID(int=42)),
        ("action", "records.write"),
        ("purpose", "HRESCH"),
        ("grant_ref", ""),
        ("resource_ids", ["Observation/11", "Observation/other"]),
        ("query", "code=1234-5"),
        ("outcome", "deny"),
        ("job_id", "job-1"),
        ("reason", "because"),
        ("break_glass", True),
    ],
)
def test_editing_any_column_of_a_sealed_entry_is_named(log: list[AccessLogEntry], column: str, value: object) -> None:
    AccessLogEntry.objects.filter(pk=log[11].pk).update(**{column: value})
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id, problem.checkpoint_id) == (
        "edited",
        11,
        log[11].pk,
        AccessLogCheckpoint.objects.get(first_seq=8).pk,
    )


def test_editing_the_time_by_one_microsecond_is_named(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[3].pk).update(at=F("at") + timedelta(microseconds=1))
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("edited", 3, log[3].pk)


def test_deleting_an_entry_is_named_by_its_seq(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[5].pk).delete()
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("deleted", 5, None)


def test_deleting_an_entry_and_renumbering_the_rest_is_named(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[5].pk).delete()
    shift_seqs(from_seq=6, by=-1)
    problem = problem_of()
    assert (problem.kind, problem.seq) == ("deleted", 5)


def test_deleting_the_newest_entry_is_named(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[19].pk).delete()
    problem = problem_of()
    assert (problem.kind, problem.seq) == ("deleted", 19)


def test_unsealing_an_entry_reads_as_deleting_it(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[9].pk).update(seq=None)
    report = access_log_verify()
    assert (report.problem.kind, report.problem.seq, report.unsealed_entries) == ("deleted", 9, 1)


def test_inserting_a_forged_entry_inside_a_range_is_named(log: list[AccessLogEntry]) -> None:
    shift_seqs(from_seq=10, by=1)
    forged = forge_row(10)
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("inserted", 10, forged)


def test_inserting_a_forged_entry_at_the_end_of_a_range_is_named(log: list[AccessLogEntry]) -> None:
    shift_seqs(from_seq=15, by=1)
    forged = forge_row(15)
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("inserted", 15, forged)


def test_a_forged_entry_past_the_last_checkpoint_is_named(log: list[AccessLogEntry]) -> None:
    forged = forge_row(20)
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("inserted", 20, forged)


def test_a_forged_entry_with_a_negative_seq_is_named(log: list[AccessLogEntry]) -> None:
    forged = forge_row(-1)
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("inserted", -1, forged)


def test_swapping_two_entries_positions_is_named_at_the_earlier(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[2].pk).update(seq=-5)
    AccessLogEntry.objects.filter(pk=log[6].pk).update(seq=2)
    AccessLogEntry.objects.filter(pk=log[2].pk).update(seq=6)
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("reordered", 2, log[6].pk)


def test_swapping_two_neighbours_is_named_at_the_earlier(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[12].pk).update(seq=-5)
    AccessLogEntry.objects.filter(pk=log[13].pk).update(seq=12)
    AccessLogEntry.objects.filter(pk=log[12].pk).update(seq=13)
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("reordered", 12, log[13].pk)


def test_swapping_two_entries_contents_is_named_at_the_earlier(log: list[AccessLogEntry]) -> None:
    columns = ["at", "actor", "patient_ref", "action", "purpose", "grant_ref", "resource_ids", "query", "outcome"]
    first = AccessLogEntry.objects.filter(pk=log[17].pk).values(*columns).get()
    second = AccessLogEntry.objects.filter(pk=log[18].pk).values(*columns).get()
    AccessLogEntry.objects.filter(pk=log[17].pk).update(**second)
    AccessLogEntry.objects.filter(pk=log[18].pk).update(**first)
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("reordered", 17, log[17].pk)


def test_the_first_of_several_problems_is_the_one_named(log: list[AccessLogEntry]) -> None:
    AccessLogEntry.objects.filter(pk=log[14].pk).update(actor="user:nobody")
    AccessLogEntry.objects.filter(pk=log[4].pk).delete()
    AccessLogEntry.objects.filter(pk=log[18].pk).update(outcome="deny")
    problem = problem_of()
    assert (problem.kind, problem.seq) == ("deleted", 4)


def checkpoint_at(first_seq: int) -> AccessLogCheckpoint:
    return AccessLogCheckpoint.objects.get(first_seq=first_seq)


def test_editing_a_checkpoint_root_is_named(log: list[AccessLogEntry]) -> None:
    checkpoint = checkpoint_at(8)
    AccessLogCheckpoint.objects.filter(pk=checkpoint.pk).update(root=bytes(32))
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id, problem.checkpoint_id) == (
        "checkpoint-mismatch",
        8,
        log[8].pk,
        checkpoint.pk,
    )


def test_editing_a_checkpoint_leaf_is_named(log: list[AccessLogEntry]) -> None:
    checkpoint = checkpoint_at(16)
    leaves = bytearray(bytes(checkpoint.leaves))
    leaves[40] ^= 0xFF
    AccessLogCheckpoint.objects.filter(pk=checkpoint.pk).update(leaves=bytes(leaves))
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.checkpoint_id) == ("checkpoint-mismatch", 16, checkpoint.pk)


def test_truncating_a_checkpoint_leaf_list_is_named(log: list[AccessLogEntry]) -> None:
    checkpoint = checkpoint_at(0)
    AccessLogCheckpoint.objects.filter(pk=checkpoint.pk).update(leaves=bytes(checkpoint.leaves)[:-32])
    problem = problem_of()
    assert (problem.kind, problem.seq) == ("checkpoint-mismatch", 0)


def rewrite_checkpoint(
    checkpoint: AccessLogCheckpoint, leaves: list[bytes], *, signer: Ed25519PrivateKey | None
) -> None:
    root = merkle_root(leaves)
    message = checkpoint_message(
        first_seq=checkpoint.first_seq,
        last_seq=checkpoint.last_seq,
        root=root,
        prev_root=bytes(checkpoint.prev_root),
        created_at=checkpoint.created_at,
    )
    changes: dict[str, object] = {"leaves": b"".join(leaves), "root": root}
    if signer is not None:
        changes["signature"] = signer.sign(message)
        changes["key_fingerprint"] = public_key_fingerprint(signer.public_key())
    AccessLogCheckpoint.objects.filter(pk=checkpoint.pk).update(**changes)


def edit_entry_and_cover_it(log: list[AccessLogEntry], *, signer: Ed25519PrivateKey | None) -> AccessLogCheckpoint:
    AccessLogEntry.objects.filter(pk=log[10].pk).update(outcome="deny")
    checkpoint = checkpoint_at(8)
    leaves = split_leaves(bytes(checkpoint.leaves))
    leaves[2] = entry_leaf_hash(AccessLogEntry.objects.get(pk=log[10].pk))
    rewrite_checkpoint(checkpoint, leaves, signer=signer)
    return checkpoint


def test_an_edit_covered_by_recomputed_leaves_and_root_fails_the_signature(log: list[AccessLogEntry]) -> None:
    checkpoint = edit_entry_and_cover_it(log, signer=None)
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.checkpoint_id) == ("bad-signature", 8, checkpoint.pk)


def test_an_edit_covered_by_a_checkpoint_signed_with_another_key_is_named(log: list[AccessLogEntry]) -> None:
    checkpoint = edit_entry_and_cover_it(log, signer=Ed25519PrivateKey.generate())
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.checkpoint_id) == ("bad-signature", 8, checkpoint.pk)
    assert "signed by key" in problem.detail


def test_another_keys_signature_under_the_real_fingerprint_is_named(log: list[AccessLogEntry]) -> None:
    checkpoint = checkpoint_at(8)
    real_fingerprint = checkpoint.key_fingerprint
    edit_entry_and_cover_it(log, signer=Ed25519PrivateKey.generate())
    AccessLogCheckpoint.objects.filter(pk=checkpoint.pk).update(key_fingerprint=real_fingerprint)
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.detail) == (
        "bad-signature",
        8,
        "the signature does not match the checkpoint",
    )


def test_a_log_signed_by_a_different_audit_key_is_named_at_its_first_checkpoint(
    log: list[AccessLogEntry], settings
) -> None:  # type: ignore[no-untyped-def]
    from healthledger.lib.keyfiles import clear_key_caches, encode_key

    settings.HEALTHLEDGER_AUDIT_KEY = encode_key(bytes(range(32)))
    clear_key_caches()
    problem = problem_of()
    assert (problem.kind, problem.seq) == ("bad-signature", 0)


def test_deleting_a_middle_checkpoint_is_a_gap(log: list[AccessLogEntry]) -> None:
    checkpoint_at(8).delete()
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("gap", 8, log[8].pk)


def test_deleting_the_newest_checkpoint_is_a_gap(log: list[AccessLogEntry]) -> None:
    checkpoint_at(16).delete()
    problem = problem_of()
    assert (problem.kind, problem.seq) == ("gap", 16)


def test_deleting_the_newest_checkpoint_and_rewinding_the_seal_state_leaves_uncovered_entries(
    log: list[AccessLogEntry],
) -> None:
    previous = checkpoint_at(8)
    checkpoint_at(16).delete()
    AccessLogSealState.objects.update(next_seq=16, head_root=bytes(previous.root))
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.entry_id) == ("inserted", 16, log[16].pk)


def test_a_checkpoint_that_does_not_chain_to_its_predecessor_is_named(log: list[AccessLogEntry]) -> None:
    # The sealer signs whatever head it is given: a tampered seal state yields a signed but unchained checkpoint.
    AccessLogSealState.objects.update(head_root=bytes(range(32)))
    append(2, start=50)
    (new,) = access_log_seal()
    problem = problem_of()
    assert (problem.kind, problem.seq, problem.checkpoint_id) == ("checkpoint-mismatch", 20, new.pk)
    assert problem.detail == "does not chain to the previous checkpoint's root"


def test_a_verification_inside_an_open_transaction_reads_that_transaction(log: list[AccessLogEntry]) -> None:
    # The db fixture holds a transaction open: verify must not try to change its isolation level.
    assert connection.in_atomic_block
    assert access_log_verify().ok is True
