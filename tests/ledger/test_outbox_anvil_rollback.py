"""A real anvil that comes back without its last blocks (its state file rolled back, as a node killed right
after confirming comes back): the relay takes back what was lost and records it again, once."""

from __future__ import annotations

import secrets
import shutil
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from ledger import outbox, signing
from ledger.client import chain_client
from ledger.devnode import ANVIL_BINARY, anvil_running
from ledger.models import OutboxMessage, OutboxStatus, RelayerState
from ledger.outbox import outbox_enqueue, outbox_relay, register_outbox_handler
from ledger.services import deployment_create
from tests.ledger.conftest import register_key
from tests.ledger.test_outbox_anvil import _payload, node_settings  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ANVIL_BINARY.exists(), reason="anvil is not installed (npm install)"),
]

GRANTS = 3


def _signed(deployment, now: int, count: int = GRANTS) -> list[tuple[signing.Grant, signing.Signature]]:  # type: ignore[no-untyped-def]
    signed = []
    for _ in range(count):
        key = secrets.token_bytes(32)
        register_key(chain_client(), key)  # the contract records grants of registered keys only
        grant = signing.Grant(
            patient=signing.patient_address(private_key=key),
            grantee=signing.patient_address(private_key=secrets.token_bytes(32)),
            scope_commitment=signing.new_salt(),
            not_before=now,
            not_after=now + 3600,
            salt=signing.new_salt(),
        )
        signature = signing.grant_sign(
            grant, private_key=key, chain_id=deployment.chain_id, verifying_contract=deployment.address
        )
        signed.append((grant, signature))
    return signed


def _relay_until_confirmed(passes: int = 15) -> list[outbox.RelayReport]:
    reports = []
    for _ in range(passes):
        OutboxMessage.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        reports.append(outbox_relay())
        if not OutboxMessage.objects.exclude(status=OutboxStatus.CONFIRMED).exists():
            break
        time.sleep(0.2)
    return reports


def test_grants_lost_when_anvil_rolls_back_are_recorded_again_exactly_once(db, node_settings, monkeypatch):  # noqa: F811
    port, state = node_settings
    monkeypatch.setattr("ledger.outbox.handlers._HANDLERS", {})  # where outbox_handlers() reads it
    told: list[tuple[str, str]] = []
    register_outbox_handler(
        "grant",
        on_confirmed=lambda m: told.append(("confirmed", m.ref)),
        on_reorged=lambda m: told.append(("reorged", m.ref)),
    )
    with anvil_running(port=port, state=state):
        deployment = deployment_create()
        signed = _signed(deployment, chain_client().latest_block()[1])
    before = state.with_name("before-grants.json")
    shutil.copy(state, before)  # the chain as it was before the grants' blocks

    with anvil_running(port=port, state=state):
        with transaction.atomic():
            for grant, signature in signed:
                ref = "0x" + signing.grant_id(grant).hex()
                outbox_enqueue(kind="grant", ref=ref, payload=_payload(grant, signature))
        _relay_until_confirmed()
        assert set(OutboxMessage.objects.values_list("status", flat=True)) == {OutboxStatus.CONFIRMED}
        hashes = dict(OutboxMessage.objects.values_list("ref", "tx_hash"))
    shutil.copy(before, state)  # the node comes back without those blocks

    with anvil_running(port=port, state=state):
        assert chain_client().transaction_count("latest") < RelayerState.objects.get().next_nonce
        reports = _relay_until_confirmed()
        events = chain_client().grant_events(from_block=deployment.block)
        mined = chain_client().transaction_count("latest")

    assert sum(r.reorged for r in reports) == GRANTS
    assert set(OutboxMessage.objects.values_list("status", flat=True)) == {OutboxStatus.CONFIRMED}
    assert dict(OutboxMessage.objects.values_list("ref", "tx_hash")) == hashes  # the same transactions again
    recorded = sorted("0x" + e.grant_id.hex() for e in events if e.kind == "recorded")
    assert recorded == sorted(hashes)
    assert mined == RelayerState.objects.get().next_nonce
    assert [kind for kind, _ in told].count("reorged") == GRANTS
    assert [kind for kind, _ in told].count("confirmed") == 2 * GRANTS
