"""Anchoring policy and its outbox messages: what is anchored, when, and what the chain's answer changes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit.anchoring import access_log_anchor, anchor_confirmed, anchor_failed, range_leaves
from audit.merkle import merkle_root
from audit.models import AccessLogAnchor, AccessLogCheckpoint, AnchorStatus
from audit.tasks import access_log_anchor_task
from healthledger.errors import AccessLogTampered
from ledger.models import OutboxMessage, OutboxStatus
from ledger.outbox import outbox_relay
from tests.audit.anchor_support import seal

pytestmark = pytest.mark.django_db


def ranges(anchors: list[AccessLogAnchor]) -> list[tuple[int, int]]:
    return [(anchor.first_seq, anchor.last_seq) for anchor in anchors]


def outbox_rows() -> list[tuple[str, str, dict[str, object]]]:
    return [(m.kind, m.ref, m.payload) for m in OutboxMessage.objects.order_by("id")]


def test_a_backlog_is_anchored_in_runs_of_whole_checkpoints_holding_at_least_the_entry_threshold(settings):
    settings.AUDIT_ANCHOR_ENTRIES = 6
    seal(21, per_checkpoint=4)  # checkpoints 0..3, 4..7, ..., 16..19, 20..20

    anchors = access_log_anchor()

    assert ranges(anchors) == [(0, 7), (8, 15)]  # 16..20 holds five entries and is recent: it waits
    assert [a.checkpoint.last_seq for a in anchors] == [7, 15]
    assert all(a.status == AnchorStatus.PENDING for a in anchors)


def test_each_anchor_is_one_outbox_message_with_the_root_of_its_range_and_the_entries_anchored_so_far(settings):
    settings.AUDIT_ANCHOR_ENTRIES = 8
    seal(16, per_checkpoint=4)

    anchors = access_log_anchor()

    expected = []
    for anchor in anchors:
        leaves, _ = range_leaves(first_seq=anchor.first_seq, last_seq=anchor.last_seq)
        assert bytes(anchor.root) == merkle_root(leaves)
        expected.append(
            ("anchor", str(anchor.pk), {"root": "0x" + merkle_root(leaves).hex(), "size": anchor.last_seq + 1})
        )
    assert ranges(anchors) == [(0, 7), (8, 15)]
    assert outbox_rows() == expected


def test_a_few_entries_wait_until_their_oldest_checkpoint_is_old_enough(settings):
    settings.AUDIT_ANCHOR_ENTRIES = 4096
    settings.AUDIT_ANCHOR_SECONDS = 60
    seal(5, per_checkpoint=4)
    oldest = AccessLogCheckpoint.objects.order_by("first_seq").first().created_at

    too_early = access_log_anchor(now=oldest + timedelta(seconds=59))
    due = access_log_anchor(now=oldest + timedelta(seconds=60))

    assert too_early == []
    assert ranges(due) == [(0, 4)]


def test_running_the_anchorer_again_anchors_nothing_twice(settings):
    settings.AUDIT_ANCHOR_ENTRIES = 4
    seal(8, per_checkpoint=4)
    first = access_log_anchor()

    second = access_log_anchor()
    task_ids = access_log_anchor_task()

    assert ranges(first) == [(0, 3), (4, 7)]
    assert second == []
    assert task_ids == []
    assert OutboxMessage.objects.count() == 2


def test_the_task_anchors_what_is_due_and_returns_the_anchor_ids(settings):
    settings.AUDIT_ANCHOR_ENTRIES = 4
    seal(4, per_checkpoint=4)

    ids = access_log_anchor_task()

    assert ids == list(AccessLogAnchor.objects.values_list("id", flat=True))
    assert len(ids) == 1


def test_the_relay_anchors_it_on_chain_and_the_row_records_the_chains_tx_and_block(chain):
    seal(10, per_checkpoint=4)
    [anchor] = access_log_anchor(force=True)

    report = outbox_relay()

    anchor.refresh_from_db()
    [on_chain] = chain.anchors()
    assert report.confirmed == 1
    assert (anchor.status, anchor.tx_hash, anchor.block_number) == (AnchorStatus.ANCHORED, on_chain.tx, on_chain.block)
    assert (on_chain.root, on_chain.size) == (bytes(anchor.root), 10)
    assert anchor.anchored_at is not None
    assert OutboxMessage.objects.get().status == OutboxStatus.CONFIRMED


def test_the_next_anchor_starts_where_the_last_one_ended(chain, settings):
    seal(6, per_checkpoint=4)
    access_log_anchor(force=True)
    outbox_relay()
    seal(3, start=100, per_checkpoint=4)

    [second] = access_log_anchor(force=True)
    outbox_relay()

    assert (second.first_seq, second.last_seq) == (6, 8)
    assert [a.size for a in chain.anchors()] == [6, 9]


def test_a_range_the_chain_refused_is_anchored_again_by_a_new_row_with_a_new_outbox_message():
    seal(8, per_checkpoint=4)
    [refused] = access_log_anchor(force=True)

    anchor_failed(anchor_id=refused.pk, error="NotOperator")
    [again] = access_log_anchor(force=True)

    refused.refresh_from_db()
    assert refused.status == AnchorStatus.FAILED
    assert (again.first_seq, again.last_seq, bytes(again.root)) == (0, 7, bytes(refused.root))
    assert again.pk != refused.pk
    assert [ref for _, ref, _ in outbox_rows()] == [str(refused.pk), str(again.pk)]


def test_a_checkpoint_that_does_not_verify_is_never_anchored():
    seal(8, per_checkpoint=4)
    AccessLogCheckpoint.objects.filter(first_seq=4).update(root=bytes(32))

    with pytest.raises(AccessLogTampered, match="does not verify"):
        access_log_anchor(force=True)

    assert AccessLogAnchor.objects.count() == 0
    assert OutboxMessage.objects.count() == 0


def test_a_hole_in_the_checkpoints_is_never_anchored_across():
    seal(12, per_checkpoint=4)
    AccessLogCheckpoint.objects.filter(first_seq=0).delete()

    with pytest.raises(AccessLogTampered, match="no checkpoint starts at seq 0"):
        access_log_anchor(force=True)

    assert AccessLogAnchor.objects.count() == 0


def test_nothing_sealed_means_nothing_to_anchor():
    assert access_log_anchor(force=True) == []


def test_an_anchor_confirmed_twice_keeps_its_first_confirmation_time():
    seal(4, per_checkpoint=4)
    [anchor] = access_log_anchor(force=True)

    first = anchor_confirmed(anchor_id=anchor.pk, tx_hash="0x" + "ab" * 32, block_number=7)
    again = anchor_confirmed(anchor_id=anchor.pk, tx_hash="0x" + "ab" * 32, block_number=7)

    assert first is not None
    assert again is not None
    assert (again.status, again.tx_hash, again.block_number) == (AnchorStatus.ANCHORED, "0x" + "ab" * 32, 7)
    assert again.anchored_at == first.anchored_at
    assert anchor_confirmed(anchor_id=anchor.pk + 1000, tx_hash="0x00", block_number=1) is None
