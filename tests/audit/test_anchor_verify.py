"""verify_access_log against the chain: each anchor on chain must match the database's checkpoints."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain_check import ANCHOR_MISMATCH, access_log_verify_chain
from audit.models import AccessLogAnchor, AccessLogCheckpoint, AccessLogEntry, AccessLogSealState, AnchorStatus
from audit.services import access_log_verify
from ledger.client import chain_client_reset
from tests.audit.anchor_support import anchor_and_relay, rewrite_history, seal

pytestmark = pytest.mark.django_db


def described(check) -> list[str]:  # type: ignore[no-untyped-def]
    return [problem.describe() for problem in check.problems]


def test_an_anchored_log_matches_the_chain(chain):
    seal(10, per_checkpoint=4)
    anchor_and_relay()
    seal(5, start=100, per_checkpoint=4)
    anchor_and_relay()

    check = access_log_verify_chain()

    assert check.ok
    assert (check.reachable, check.anchors_on_chain, check.anchored_entries, check.problems) == (True, 2, 15, ())


def test_history_rewritten_with_the_audit_key_passes_the_database_check_but_not_the_chain(chain):
    entries = seal(12, per_checkpoint=4)
    anchor_and_relay()
    target = AccessLogCheckpoint.objects.get(first_seq=4)

    rewrite_history(entries[5], action="records.write")

    assert access_log_verify().ok
    check = access_log_verify_chain()
    [problem] = check.problems
    assert (problem.kind, problem.first_seq, problem.last_seq) == (ANCHOR_MISMATCH, 0, 11)
    assert problem.checkpoint_ids == tuple(
        AccessLogCheckpoint.objects.order_by("first_seq").values_list("id", flat=True)
    )
    assert target.pk in problem.checkpoint_ids
    assert "the database's checkpoints give another" in problem.detail


def test_a_checkpoint_root_edited_after_anchoring_is_an_anchor_mismatch_naming_that_checkpoint(chain):
    seal(12, per_checkpoint=4)
    anchor_and_relay()
    target = AccessLogCheckpoint.objects.get(first_seq=4)

    AccessLogCheckpoint.objects.filter(pk=target.pk).update(root=bytes(32))

    [problem] = access_log_verify_chain().problems
    assert problem.describe() == (
        f"anchor-mismatch at seq 0..11, checkpoint {target.pk}, tx {AccessLogAnchor.objects.get().tx_hash}: "
        "the checkpoint's root is not the root of the leaves the chain anchored"
    )
    assert access_log_verify().problem.kind == "checkpoint-mismatch"


def test_a_database_restored_without_its_newest_entries_is_caught_by_the_chain(chain):
    seal(8, per_checkpoint=4)
    anchor_and_relay()
    seal(4, start=100, per_checkpoint=4)
    anchor_and_relay()
    # An older backup: the last checkpoint, its entries and its anchor row never existed.
    last = AccessLogCheckpoint.objects.get(first_seq=8)
    AccessLogAnchor.objects.filter(checkpoint=last).delete()
    AccessLogEntry.objects.filter(seq__gte=8).delete()
    last.delete()
    AccessLogSealState.objects.filter(pk=1).update(
        next_seq=8, head_root=AccessLogCheckpoint.objects.get(first_seq=4).root
    )

    assert access_log_verify().ok
    [problem] = access_log_verify_chain().problems
    assert (problem.kind, problem.first_seq, problem.last_seq, problem.checkpoint_ids) == (ANCHOR_MISMATCH, 8, 11, ())
    assert "the database's checkpoints do not cover them" in problem.detail


def test_a_range_marked_anchored_that_the_chain_never_saw_is_reported(chain):
    seal(8, per_checkpoint=4)
    anchor_and_relay()
    seal(4, start=100, per_checkpoint=4)
    from audit.anchoring import access_log_anchor

    [unsent] = access_log_anchor(force=True)  # queued, never relayed
    AccessLogAnchor.objects.filter(pk=unsent.pk).update(status=AnchorStatus.ANCHORED, tx_hash="0x" + "11" * 32)

    [problem] = access_log_verify_chain().problems
    assert problem.describe() == (
        f"anchor-mismatch at seq 8..11, checkpoint {unsent.checkpoint_id}, tx 0x{'11' * 32}: "
        "the database says this range is anchored; the chain has no such anchor"
    )


def test_an_anchor_still_on_its_way_to_the_chain_is_not_a_problem(chain):
    from audit.anchoring import access_log_anchor

    seal(8, per_checkpoint=4)
    access_log_anchor(force=True)

    check = access_log_verify_chain()

    assert (check.ok, check.anchors_on_chain, check.anchored_entries) == (True, 0, 0)


def test_an_unreachable_chain_is_said_plainly_and_checks_nothing(settings):
    seal(4, per_checkpoint=4)
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    chain_client_reset()
    try:
        check = access_log_verify_chain()
    finally:
        chain_client_reset()

    assert (check.reachable, check.ok, check.problems) == (False, False, ())
    assert check.error.startswith("ChainUnavailable: chain node unavailable")


def test_the_command_exits_0_when_the_log_matches_the_chain(chain, capsys):
    seal(10, per_checkpoint=4)
    anchor_and_relay()

    call_command("verify_access_log")

    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "unprotected window 0 s (maximum merge delay 600 s): 0 entries not sealed (none), "
        "0 sealed entries after seq 9 not anchored (none)",
        "chain: 1 anchors cover seq 0..9",
        "access log OK, and matches the chain",
    ]


def test_the_command_exits_1_and_prints_each_anchor_mismatch(chain, capsys):
    entries = seal(8, per_checkpoint=4)
    anchor_and_relay()
    rewrite_history(entries[2], outcome="deny")

    with pytest.raises(CommandError) as failed:
        call_command("verify_access_log")

    assert failed.value.returncode == 1
    assert str(failed.value) == "access log FAILED verification against the chain: 1 problem(s)"
    assert capsys.readouterr().err.startswith("anchor-mismatch at seq 0..7, checkpoints ")


def test_the_command_exits_2_when_the_chain_is_unreachable_and_the_database_verifies(settings):
    seal(4, per_checkpoint=4)
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    chain_client_reset()
    try:
        with pytest.raises(CommandError) as unreachable:
            call_command("verify_access_log")
    finally:
        chain_client_reset()

    assert unreachable.value.returncode == 2
    assert str(unreachable.value).startswith("chain UNREACHABLE (ChainUnavailable: chain node unavailable")


def test_tampering_wins_over_an_unreachable_chain(settings):
    entries = seal(4, per_checkpoint=4)
    AccessLogEntry.objects.filter(pk=entries[1].pk).update(action="records.write")
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    chain_client_reset()
    try:
        with pytest.raises(CommandError) as failed:
            call_command("verify_access_log")
    finally:
        chain_client_reset()

    assert failed.value.returncode == 1
    assert str(failed.value).startswith("access log FAILED verification: edited at seq 1")


def test_no_chain_skips_the_chain(settings, capsys):
    seal(4, per_checkpoint=4)
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    chain_client_reset()
    try:
        call_command("verify_access_log", "--no-chain")
    finally:
        chain_client_reset()

    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("unprotected window ")
    assert out[2:] == ["access log OK"]
