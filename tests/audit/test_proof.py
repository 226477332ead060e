from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.core.management import CommandError, call_command

from audit.leaves import entry_leaf_hash
from audit.models import AccessLogCheckpoint, AccessLogEntry
from audit.services import access_log_proof, verify_inclusion
from healthledger.errors import AccessLogTampered, ResourceNotFound
from tests.audit.conftest import append

SealedLog = Callable[..., list[AccessLogEntry]]


def test_every_sealed_entry_has_a_proof_that_verifies_against_its_checkpoint_root(sealed_log: SealedLog) -> None:
    entries = sealed_log(21, per_checkpoint=13)
    for entry in entries:
        proof = access_log_proof(entry=entry)
        checkpoint = AccessLogCheckpoint.objects.get(pk=proof.checkpoint_id)
        assert (proof.leaf_index, proof.tree_size) == (entry.seq - checkpoint.first_seq, checkpoint.size)
        assert proof.root == bytes(checkpoint.root)
        assert verify_inclusion(entry_leaf_hash(entry), proof) is True


def test_a_proof_fails_for_an_edited_entry_another_entry_or_another_root(sealed_log: SealedLog) -> None:
    entries = sealed_log(10, per_checkpoint=10)
    proof = access_log_proof(entry=entries[4])
    AccessLogEntry.objects.filter(pk=entries[4].pk).update(purpose="HRESCH")
    edited = AccessLogEntry.objects.get(pk=entries[4].pk)
    assert verify_inclusion(entry_leaf_hash(edited), proof) is False
    assert verify_inclusion(entry_leaf_hash(entries[5]), proof) is False
    assert verify_inclusion(entry_leaf_hash(entries[4]), proof, root=bytes(32)) is False


def test_an_unsealed_entry_has_no_proof_yet(db: None) -> None:
    (entry,) = append(1)
    with pytest.raises(ResourceNotFound):
        access_log_proof(entry=entry)


def test_no_proof_is_given_against_a_tampered_checkpoint(sealed_log: SealedLog) -> None:
    entries = sealed_log(4)
    AccessLogCheckpoint.objects.update(root=bytes(32))
    with pytest.raises(AccessLogTampered):
        access_log_proof(entry=entries[0])


def test_the_proof_command_prints_a_proof_that_checks(sealed_log: SealedLog, capsys) -> None:  # type: ignore[no-untyped-def]
    entries = sealed_log(6, per_checkpoint=6)
    call_command("access_log_proof", str(entries[3].pk))
    printed = json.loads(capsys.readouterr().out)
    checkpoint = AccessLogCheckpoint.objects.get()
    assert printed["entry_id"] == entries[3].pk
    assert (printed["seq"], printed["leaf_index"], printed["tree_size"]) == (3, 3, 6)
    assert printed["root"] == bytes(checkpoint.root).hex()
    assert printed["leaf_hash"] == entry_leaf_hash(entries[3]).hex()
    assert len(printed["audit_path"]) == 3
    assert printed["checkpoint"]["signature"] == bytes(checkpoint.signature).hex()
    assert printed["verified"] is True


def test_the_proof_command_refuses_an_unknown_entry(db: None) -> None:
    with pytest.raises(CommandError, match="no access-log entry with id 999"):
        call_command("access_log_proof", "999")
