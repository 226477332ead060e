"""The outbox relay against a real anvil process that goes down and comes back with its chain."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from ledger import signing
from ledger.client import chain_client, chain_client_reset
from ledger.devnode import ANVIL_BINARY, anvil_running, free_port
from ledger.models import OutboxMessage, OutboxStatus
from ledger.outbox import outbox_enqueue, outbox_relay, register_outbox_handler
from ledger.services import deployment_create
from tests.ledger.conftest import register_key

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ANVIL_BINARY.exists(), reason="anvil is not installed (npm install)"),
]

GRANTS = 4


def _payload(grant: signing.Grant, signature: signing.Signature) -> dict[str, object]:
    return {
        "grant": {
            "patient": grant.patient,
            "grantee": grant.grantee,
            "scope_commitment": "0x" + grant.scope_commitment.hex(),
            "not_before": grant.not_before,
            "not_after": grant.not_after,
            "salt": "0x" + grant.salt.hex(),
        },
        "signature": "0x" + signature.to_bytes().hex(),
    }


def _make_due() -> None:
    OutboxMessage.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def node_settings(settings, tmp_path):  # type: ignore[no-untyped-def]
    port = free_port()
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{port}"
    settings.CHAIN_TIMEOUT_SECONDS = 2
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 1
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 4
    chain_client_reset()
    yield port, tmp_path / "anvil-state.json"
    chain_client_reset()


def test_grants_enqueued_while_anvil_is_down_are_recorded_exactly_once_when_it_returns(db, node_settings, monkeypatch):
    port, state = node_settings
    monkeypatch.setattr("ledger.outbox.handlers._HANDLERS", {})  # where outbox_handlers() reads it
    confirmed: list[tuple[str, str, int | None]] = []
    register_outbox_handler("grant", on_confirmed=lambda m: confirmed.append((m.ref, m.tx_hash, m.block_number)))

    with anvil_running(port=port, state=state):
        deployment = deployment_create()
        keys = [secrets.token_bytes(32) for _ in range(GRANTS)]
        for key in keys:
            register_key(chain_client(), key)  # the contract records grants of registered keys only
        _, now = chain_client().latest_block()
        nonce_after_deploy = chain_client().transaction_count("latest")
        signed = []
        for key in keys:
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

    # The node is down: the writes still commit with their grants, and the relay backs off.
    with transaction.atomic():
        for grant, signature in signed:
            outbox_enqueue(kind="grant", ref="0x" + signing.grant_id(grant).hex(), payload=_payload(grant, signature))
    down = [outbox_relay()]
    _make_due()
    down.append(outbox_relay())
    while_down = sorted(OutboxMessage.objects.values_list("status", "attempts", "nonce", "last_error"))

    with anvil_running(port=port, state=state):
        assert chain_client().has_code(deployment.address)  # the same chain came back
        _make_due()
        passes = []
        for _ in range(10):
            passes.append(outbox_relay())
            if not OutboxMessage.objects.exclude(status=OutboxStatus.CONFIRMED).exists():
                break
            time.sleep(0.2)
        events = chain_client().grant_events(from_block=deployment.block)
        mined_nonce = chain_client().transaction_count("latest")

    assert [(r.unavailable, r.sent, r.deferred) for r in down] == [(True, 0, GRANTS), (True, 0, GRANTS)]
    assert while_down == [(OutboxStatus.PENDING, 2, None, "ChainUnavailable")] * GRANTS
    assert sum(r.sent for r in passes) == GRANTS
    assert sum(r.confirmed for r in passes) == GRANTS
    messages = list(OutboxMessage.objects.order_by("nonce"))
    assert [m.status for m in messages] == [OutboxStatus.CONFIRMED] * GRANTS
    assert [m.nonce for m in messages] == list(range(nonce_after_deploy, nonce_after_deploy + GRANTS))
    assert mined_nonce == nonce_after_deploy + GRANTS
    recorded_per_id: dict[str, int] = {}
    for event in events:
        if event.kind == "recorded":
            key = "0x" + event.grant_id.hex()
            recorded_per_id[key] = recorded_per_id.get(key, 0) + 1
    assert recorded_per_id == {"0x" + signing.grant_id(grant).hex(): 1 for grant, _ in signed}
    assert sorted(confirmed) == sorted((m.ref, m.tx_hash, m.block_number) for m in messages)
