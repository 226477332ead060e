"""Access-log anchoring: operator only, one event per anchor, and a running head that shows a missing one."""

from __future__ import annotations

import secrets

import pytest

from ledger.client import ANCHOR_GENESIS_HEAD, ChainClient, ContractReverted, anchor_head_after


def test_the_operator_anchors_and_the_events_fold_to_the_on_chain_head(chain):
    roots = [secrets.token_bytes(32) for _ in range(3)]
    refs = [chain.anchor(root, 4096 * (index + 1)) for index, root in enumerate(roots)]

    anchors = chain.anchors()

    assert [(a.root, a.size, a.tx, a.block) for a in anchors] == [
        (root, 4096 * (index + 1), ref.hash, ref.block)
        for index, (root, ref) in enumerate(zip(roots, refs, strict=True))
    ]
    head = ANCHOR_GENESIS_HEAD
    for anchor in anchors:
        head = anchor_head_after(head, anchor.root, anchor.size)
        assert anchor.head == head
    assert chain.anchor_head() == head


def test_a_missing_anchor_event_shows_in_the_head(chain):
    chain.anchor(secrets.token_bytes(32), 10)
    chain.anchor(secrets.token_bytes(32), 20)
    [_, last] = chain.anchors()

    assert anchor_head_after(ANCHOR_GENESIS_HEAD, last.root, last.size) != chain.anchor_head()


def test_anchors_from_a_block_leave_out_earlier_ones(chain):
    chain.anchor(secrets.token_bytes(32), 10)
    second = chain.anchor(secrets.token_bytes(32), 20)

    assert [a.size for a in chain.anchors(from_block=second.block)] == [20]


def test_anyone_but_the_operator_is_refused_an_anchor(chain):
    stranger = ChainClient(w3=chain.w3, operator_key=secrets.token_bytes(32), address=chain.address)
    stranger.operator_fund_from_node(minimum_wei=10**18, amount_wei=10**19)
    head_before = chain.anchor_head()

    with pytest.raises(ContractReverted) as refused:
        stranger.anchor(secrets.token_bytes(32), 4096)

    assert refused.value.reason == "NotOperator"
    assert chain.anchor_head() == head_before
    assert chain.anchors() == []
