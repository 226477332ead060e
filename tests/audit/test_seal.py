from __future__ import annotations

import uuid
from datetime import UTC, datetime
from hashlib import sha256

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.db import transaction

from audit.leaves import entry_leaf_hash
from audit.merkle import merkle_root, split_leaves
from audit.models import AccessLogCheckpoint, AccessLogEntry, AccessLogSealState
from audit.services import LogEvent, access_log_append, access_log_append_many, access_log_seal
from audit.signing import audit_key, checkpoint_message, public_key_fingerprint, signature_valid
from audit.tasks import access_log_seal_task
from healthledger.lib.keyfiles import clear_key_caches, encode_key
from tests.audit.conftest import append, event


@pytest.mark.django_db(transaction=True)  # the plain db fixture wraps every test in a transaction
def test_appending_outside_a_transaction_raises() -> None:
    with pytest.raises(RuntimeError, match="inside the operation's transaction"):
        access_log_append(event=event(1))
    with pytest.raises(RuntimeError, match="inside the operation's transaction"):
        access_log_append_many(events=[event(1)])
    assert AccessLogEntry.objects.count() == 0


def test_an_appended_entry_is_unsealed_until_the_sealer_runs(db: None) -> None:
    with transaction.atomic():
        entry = access_log_append(event=event(1))
    assert entry.seq is None
    assert AccessLogCheckpoint.objects.count() == 0


def test_sealing_gives_dense_seqs_in_id_order_and_splits_into_checkpoints(db: None) -> None:
    entries = append(10)
    checkpoints = access_log_seal(max_entries=4)
    assert [(c.first_seq, c.last_seq) for c in checkpoints] == [(0, 3), (4, 7), (8, 9)]
    by_id = list(AccessLogEntry.objects.order_by("id").values_list("id", "seq"))
    assert by_id == [(entry.pk, n) for n, entry in enumerate(entries)]
    assert AccessLogSealState.objects.get().next_seq == 10


def test_sealing_with_nothing_pending_makes_no_checkpoint(db: None) -> None:
    assert access_log_seal() == []
    append(2)
    assert len(access_log_seal()) == 1
    assert access_log_seal() == []
    assert AccessLogCheckpoint.objects.count() == 1


def test_the_default_checkpoint_size_comes_from_settings(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.AUDIT_CHECKPOINT_ENTRIES = 3
    append(7)
    assert [c.size for c in access_log_seal()] == [3, 3, 1]


def test_a_checkpoint_holds_the_leaves_of_its_entries_their_root_and_a_valid_signature(db: None) -> None:
    entries = append(5)
    (checkpoint,) = access_log_seal()
    checkpoint.refresh_from_db()
    leaves = split_leaves(bytes(checkpoint.leaves))
    fresh = [AccessLogEntry.objects.get(pk=entry.pk) for entry in entries]
    assert leaves == [entry_leaf_hash(entry) for entry in fresh]
    assert bytes(checkpoint.root) == merkle_root(leaves)
    assert bytes(checkpoint.prev_root) == bytes(32)
    key = audit_key()
    assert checkpoint.key_fingerprint == key.fingerprint
    message = checkpoint_message(
        first_seq=0, last_seq=4, root=bytes(checkpoint.root), prev_root=bytes(32), created_at=checkpoint.created_at
    )
    assert signature_valid(message, bytes(checkpoint.signature), public=key.public) is True


def test_each_checkpoint_chains_to_the_previous_root(db: None) -> None:
    append(6)
    first, second, third = access_log_seal(max_entries=2)
    assert bytes(second.prev_root) == bytes(first.root)
    assert bytes(third.prev_root) == bytes(second.root)
    assert bytes(AccessLogSealState.objects.get().head_root) == bytes(third.root)


def test_a_late_committing_lower_id_gets_a_later_seq(db: None) -> None:
    # A transaction that took its id first but committed after a seal: its row is not
    # visible to that seal, so it is sealed next time, after rows with higher ids.
    early = append(1)[0]
    with transaction.atomic():
        late_row = AccessLogEntry(
            id=early.pk + 10, at=early.at, actor="user:late", action="records.read", outcome="permit"
        )
        higher = AccessLogEntry(
            id=early.pk + 20, at=early.at, actor="user:high", action="records.read", outcome="permit"
        )
        higher.save(force_insert=True)
    access_log_seal()
    late_row.save(force_insert=True)
    access_log_seal()
    seqs = dict(AccessLogEntry.objects.values_list("actor", "seq"))
    assert seqs == {"user:0": 0, "user:high": 1, "user:late": 2}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"patient_ref": None, "grant_ref": "", "purpose": ""},
        {"resource_ids": []},
        {"resource_ids": ["Observation/é-ü", "Patient/日本"], "query": 'name="Zoë"\nline two\ttab\\'},
        {"outcome": "deny", "break_glass": True, "reason": "unconscious patient, ED"},
        {"job_id": str(uuid.UUID(int=7)), "actor": "job:7", "query": "code=http://loinc.org|4548-4"},
    ],
)
def test_the_model_instance_leaf_equals_the_sealed_leaf(db: None, changes: dict[str, object]) -> None:
    with transaction.atomic():
        entry = access_log_append(event=LogEvent(**{**event(3).__dict__, **changes}))  # type: ignore[arg-type]
    access_log_seal()
    (checkpoint,) = AccessLogCheckpoint.objects.all()
    stored = AccessLogEntry.objects.get(pk=entry.pk)
    assert split_leaves(bytes(checkpoint.leaves)) == [entry_leaf_hash(stored)]
    assert entry_leaf_hash(entry) == entry_leaf_hash(stored)


def test_a_timestamp_on_a_whole_second_hashes_like_any_other(db: None) -> None:
    with transaction.atomic():
        entry = access_log_append(event=event(1))
    AccessLogEntry.objects.filter(pk=entry.pk).update(at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    access_log_seal()
    stored = AccessLogEntry.objects.get(pk=entry.pk)
    assert split_leaves(bytes(AccessLogCheckpoint.objects.get().leaves)) == [entry_leaf_hash(stored)]


def test_the_signing_key_comes_from_the_environment_when_set(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    seed = sha256(b"test audit key").digest()
    settings.HEALTHLEDGER_AUDIT_KEY = encode_key(seed)
    clear_key_caches()
    append(1)
    (checkpoint,) = access_log_seal()
    assert checkpoint.key_fingerprint == public_key_fingerprint(Ed25519PrivateKey.from_private_bytes(seed).public_key())
    assert not (settings.KEYS_DIR / "audit.key").exists()


def test_without_an_environment_key_a_key_file_is_created_outside_the_database(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    append(1)
    access_log_seal()
    key_file = settings.KEYS_DIR / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    clear_key_caches()
    assert audit_key().fingerprint == AccessLogCheckpoint.objects.get().key_fingerprint


def test_the_seal_task_seals_everything_pending_and_a_second_delivery_does_nothing(db: None) -> None:
    append(5)
    assert access_log_seal_task() == 5
    assert access_log_seal_task() == 0
    assert AccessLogEntry.objects.filter(seq__isnull=True).count() == 0


def test_the_seal_task_is_registered_under_the_name_beat_uses(settings) -> None:  # type: ignore[no-untyped-def]
    assert access_log_seal_task.name == settings.CELERY_BEAT_SCHEDULE["audit-seal"]["task"]


def test_the_seal_command_reports_what_it_sealed(db: None, capsys) -> None:  # type: ignore[no-untyped-def]
    append(5)
    call_command("seal_access_log", "--max-entries", "2")
    assert capsys.readouterr().out == "sealed 5 entries into 3 checkpoints\n"
