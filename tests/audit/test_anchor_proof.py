"""An entry's inclusion proof against the root anchored on chain: verified only when the chain's root says so."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.db import transaction

from audit.anchoring import access_log_anchor
from audit.chain_check import FAILED, PENDING, UNAVAILABLE, VERIFIED, access_log_anchored_proof
from audit.leaves import entry_leaf_hash
from audit.merkle import verify_inclusion_path
from audit.models import AccessLogAnchor, AccessLogEntry
from audit.services import access_log_append
from ledger.client import chain_client_reset
from tests.audit.anchor_support import anchor_and_relay, rewrite_history, seal
from tests.audit.conftest import event

pytestmark = pytest.mark.django_db


def test_an_anchored_entry_proves_into_the_root_read_from_the_chain(chain):
    entries = seal(10, per_checkpoint=4)
    anchor_and_relay()
    [on_chain] = chain.anchors()

    proof = access_log_anchored_proof(entry=entries[6])

    assert (proof.status, proof.verified, proof.seq, proof.leaf_index, proof.tree_size) == (VERIFIED, True, 6, 6, 10)
    assert (proof.chain_root, proof.tx_hash, proof.block_number) == (on_chain.root, on_chain.tx, on_chain.block)
    assert (proof.first_seq, proof.last_seq) == (0, 9)
    assert verify_inclusion_path(entry_leaf_hash(entries[6]), 6, 10, proof.audit_path, on_chain.root)


def test_an_entry_of_a_later_anchor_proves_into_that_anchors_root(chain):
    seal(5, per_checkpoint=4)
    anchor_and_relay()
    entries = seal(7, start=100, per_checkpoint=4)
    anchor_and_relay()
    second = chain.anchors()[1]

    proof = access_log_anchored_proof(entry=entries[9])

    assert (proof.status, proof.leaf_index, proof.tree_size, proof.first_seq, proof.last_seq) == (VERIFIED, 4, 7, 5, 11)
    assert proof.chain_root == second.root


def test_the_root_comes_from_the_chain_not_from_the_anchor_row(chain):
    entries = seal(4, per_checkpoint=4)
    anchor_and_relay()
    AccessLogAnchor.objects.update(root=bytes(32), tx_hash="0x" + "00" * 32)

    proof = access_log_anchored_proof(entry=entries[0])

    assert proof.status == VERIFIED
    assert proof.chain_root == chain.anchors()[0].root
    assert proof.tx_hash == chain.anchors()[0].tx


def test_an_entry_edited_after_anchoring_fails_even_with_its_checkpoint_resigned(chain):
    entries = seal(8, per_checkpoint=4)
    anchor_and_relay()

    rewrite_history(entries[3], purpose="HRESCH")
    proof = access_log_anchored_proof(entry=AccessLogEntry.objects.get(pk=entries[3].pk))

    assert (proof.status, proof.verified) == (FAILED, False)
    assert proof.detail == "the entry does not prove into the chain's root"


def test_an_entry_edited_in_place_fails(chain):
    entries = seal(8, per_checkpoint=4)
    anchor_and_relay()
    AccessLogEntry.objects.filter(pk=entries[1].pk).update(actor="user:999")

    proof = access_log_anchored_proof(entry=AccessLogEntry.objects.get(pk=entries[1].pk))

    assert proof.status == FAILED


def test_unsealed_unanchored_and_queued_entries_are_pending(chain):
    sealed = seal(4, start=10, per_checkpoint=4)
    with transaction.atomic():
        unsealed = access_log_append(event=event(1))
    not_anchored = access_log_anchored_proof(entry=sealed[0])
    access_log_anchor(force=True)
    queued = access_log_anchored_proof(entry=sealed[0])

    assert [
        (p.status, p.detail)
        for p in (access_log_anchored_proof(entry=AccessLogEntry.objects.get(pk=unsealed.pk)), not_anchored, queued)
    ] == [
        (PENDING, "the entry is not sealed into a checkpoint yet"),
        (PENDING, "the entry's checkpoint is not anchored yet"),
        (PENDING, "the anchor is on its way to the chain"),
    ]


def test_an_unreachable_chain_leaves_the_entry_unverified_and_says_why(settings):
    entries = seal(4, per_checkpoint=4)
    access_log_anchor(force=True)
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    chain_client_reset()
    try:
        proof = access_log_anchored_proof(entry=entries[2])
    finally:
        chain_client_reset()

    assert (proof.status, proof.verified, proof.detail) == (
        UNAVAILABLE,
        False,
        "the chain could not be asked (ChainUnavailable)",
    )
    assert proof.tree_size == 4


def test_the_proof_command_prints_the_anchored_proof_as_json(chain, capsys):
    entries = seal(4, per_checkpoint=4)
    anchor_and_relay()
    [on_chain] = chain.anchors()

    call_command("access_log_proof", str(entries[1].pk), "--anchored")

    printed = json.loads(capsys.readouterr().out)
    assert (printed["status"], printed["verified"], printed["seq"], printed["leaf_index"]) == (VERIFIED, True, 1, 1)
    assert printed["anchor"] == {
        "first_seq": 0,
        "last_seq": 3,
        "chain_root": on_chain.root.hex(),
        "tx_hash": on_chain.tx,
        "block_number": on_chain.block,
    }
