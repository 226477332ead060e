"""The witness: RFC 6962 consistency proofs between tree heads, and a tree head kept outside the database."""

from __future__ import annotations

import json
import secrets

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.merkle import consistency_proof, leaf_hash, merkle_root, verify_consistency
from audit.models import AccessLogCheckpoint, AccessLogEntry, AccessLogSealState
from audit.witness import access_log_witness
from healthledger.errors import IntegrityFailure
from tests.audit.anchor_support import rewrite_history, seal


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(secrets.token_bytes(8)) for _ in range(n)]


@pytest.mark.parametrize("new_size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31])
def test_a_consistency_proof_verifies_from_every_earlier_size(new_size):
    leaves = _leaves(new_size)
    for old_size in range(1, new_size + 1):
        proof = consistency_proof(leaves, old_size) if old_size < new_size else []
        assert verify_consistency(old_size, new_size, merkle_root(leaves[:old_size]), merkle_root(leaves), proof)


@pytest.mark.parametrize("new_size", [2, 3, 5, 8, 13])
def test_a_changed_old_leaf_or_another_new_root_fails_the_proof(new_size):
    leaves = _leaves(new_size)
    for old_size in range(1, new_size):
        proof = consistency_proof(leaves, old_size)
        forged = [*leaves[: old_size - 1], leaf_hash(b"forged")]
        assert not verify_consistency(old_size, new_size, merkle_root(forged), merkle_root(leaves), proof)
        other = [*leaves[:-1], leaf_hash(b"other")]  # the same size, another newest leaf
        assert not verify_consistency(old_size, new_size, merkle_root(leaves[:old_size]), merkle_root(other), proof)


@pytest.mark.django_db
def test_the_witness_accepts_a_log_that_grew_and_keeps_its_head_in_a_file(tmp_path):
    state = tmp_path / "witness.json"
    seal(6, per_checkpoint=4)
    first = access_log_witness(path=state)
    seal(5, start=100, per_checkpoint=4)

    second = access_log_witness(path=state)

    assert (first.previous, first.current.size) == (None, 6)
    assert second.previous == first.current
    assert second.current.size == 11
    assert second.proof_hashes > 0
    kept = json.loads(state.read_text())
    assert kept["size"] == 11
    assert kept["checkpoint_id"] == AccessLogCheckpoint.objects.order_by("-last_seq").first().pk
    assert oct(state.stat().st_mode & 0o777) == "0o600"


@pytest.mark.django_db
def test_a_truncated_sealed_tail_is_caught_without_the_chain(tmp_path):
    state = tmp_path / "witness.json"
    seal(8, per_checkpoint=4)
    access_log_witness(path=state)
    # The insider deletes the last checkpoint, its entries, and rewinds the seal state.
    last = AccessLogCheckpoint.objects.order_by("-last_seq").first()
    AccessLogEntry.objects.filter(seq__gte=last.first_seq).delete()
    last.delete()
    AccessLogSealState.objects.filter(pk=1).update(next_seq=4)

    with pytest.raises(IntegrityFailure, match="the sealed log shrank: the witness saw 8 entries, the log now has 4"):
        access_log_witness(path=state)
    assert json.loads(state.read_text())["size"] == 8  # the witness does not forget


@pytest.mark.django_db
def test_a_rewritten_history_resigned_with_the_audit_key_is_caught(tmp_path):
    state = tmp_path / "witness.json"
    entries = seal(8, per_checkpoint=4)
    access_log_witness(path=state)
    rewrite_history(entries[2], action="records.write")
    seal(2, start=50, per_checkpoint=4)

    with pytest.raises(IntegrityFailure, match="not an extension of the witnessed one"):
        access_log_witness(path=state)


@pytest.mark.django_db
def test_the_command_exits_1_naming_the_failure(tmp_path, capsys):
    state = tmp_path / "witness.json"
    seal(4, per_checkpoint=4)
    call_command("witness_access_log", "--state", str(state))
    assert capsys.readouterr().out.startswith("first witness: size 4, root ")
    AccessLogEntry.objects.all().delete()
    AccessLogCheckpoint.objects.all().delete()

    with pytest.raises(CommandError) as raised:
        call_command("witness_access_log", "--state", str(state))
    assert raised.value.returncode == 1
    assert "the witness saw 4 sealed entries; the log now has none" in str(raised.value)
