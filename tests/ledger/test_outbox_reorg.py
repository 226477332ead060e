"""A chain that forgets blocks: the in-process EVM is reverted to a snapshot taken before a write was mined,
as a node killed before it saved its last blocks comes back without them."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from ledger import signing
from ledger.client import ChainClient
from ledger.models import OutboxMessage, OutboxStatus, RelayerState
from ledger.outbox import outbox_enqueue, outbox_relay, register_outbox_handler
from tests.ledger.conftest import sign
from tests.ledger.test_outbox import gid, grant_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def seen(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr("ledger.outbox.handlers._HANDLERS", {})  # where outbox_handlers() reads it
    calls: list[tuple[str, str]] = []
    for kind in ("grant", "revoke", "anchor"):
        register_outbox_handler(
            kind,
            on_confirmed=lambda m: calls.append(("confirmed", m.ref)),
            on_failed=lambda m: calls.append(("failed", m.ref)),
            on_reorged=lambda m: calls.append(("reorged", m.ref)),
        )
    return calls


def _tester(client: ChainClient):  # type: ignore[no-untyped-def]
    return client.w3.provider.ethereum_tester  # type: ignore[attr-defined]


def _enqueue_grant(chain, make_grant, alice_key) -> tuple[signing.Grant, OutboxMessage]:  # type: ignore[no-untyped-def]
    grant = make_grant()
    with transaction.atomic():
        message = outbox_enqueue(
            kind="grant", ref=gid(grant), payload=grant_payload(grant, sign(chain, grant, alice_key))
        )
    return grant, message


def test_a_grant_whose_block_the_chain_forgot_is_taken_back_and_recorded_again_with_the_same_bytes(
    chain, make_grant, alice_key, seen
):
    snapshot = _tester(chain).take_snapshot()
    grant, message = _enqueue_grant(chain, make_grant, alice_key)
    outbox_relay()
    message.refresh_from_db()
    assert message.status == OutboxStatus.CONFIRMED
    first_hash = message.tx_hash

    _tester(chain).revert_to_snapshot(snapshot)  # the node comes back without the grant's block
    assert chain.grant_state(signing.grant_id(grant)).recorded is False

    lost = outbox_relay()
    message.refresh_from_db()
    assert lost.reorged == 1
    assert (message.status, message.block_number, message.last_error) == ("sent", None, "reorg: its block is gone")
    assert seen == [("confirmed", gid(grant)), ("reorged", gid(grant))]

    outbox_relay()  # sends the same bytes again
    outbox_relay()  # finds them mined
    message.refresh_from_db()
    assert message.status == OutboxStatus.CONFIRMED
    assert message.tx_hash == first_hash  # replayed exactly: the patient's signature, the same nonce
    assert chain.grant_state(signing.grant_id(grant)).recorded is True
    assert seen[-1] == ("confirmed", gid(grant))


def test_after_the_chain_forgot_writes_later_ones_are_not_stuck_behind_the_nonce_gap(
    chain, make_grant, alice_key, seen
):
    snapshot = _tester(chain).take_snapshot()
    _, first = _enqueue_grant(chain, make_grant, alice_key)
    _, second = _enqueue_grant(chain, make_grant, alice_key)
    outbox_relay()
    _tester(chain).revert_to_snapshot(snapshot)
    assert RelayerState.objects.get().next_nonce == chain.transaction_count("pending") + 2  # ahead of the chain

    _, third = _enqueue_grant(chain, make_grant, alice_key)
    for _ in range(5):
        # In-process, a nonce above the chain's is refused (a real node queues it) and backs off: skip the wait.
        OutboxMessage.objects.update(next_attempt_at=timezone.now())
        outbox_relay()

    statuses = [OutboxMessage.objects.get(pk=m.pk).status for m in (first, second, third)]
    assert statuses == ["confirmed", "confirmed", "confirmed"]
    assert chain.transaction_count("latest") == RelayerState.objects.get().next_nonce


def test_a_nonce_gap_no_stored_message_holds_is_filled_by_the_next_write(chain, make_grant, alice_key, seen):
    # Something moved the relayer's count ahead (a message deleted by hand, a key used elsewhere and lost).
    RelayerState.objects.update_or_create(
        pk=1,
        defaults={
            "chain_id": chain.chain_id,
            "sender": chain.operator.address,
            "next_nonce": chain.transaction_count("pending") + 3,
        },
    )
    _, message = _enqueue_grant(chain, make_grant, alice_key)

    outbox_relay()

    message.refresh_from_db()
    assert message.status == OutboxStatus.CONFIRMED
    assert message.nonce == chain.transaction_count("latest") - 1
