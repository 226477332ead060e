"""The outbox relay against the in-process EVM: each write recorded once, whatever crashes or refuses."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from healthledger.celery import app as celery_app
from ledger import signing
from ledger.client import ChainClient
from ledger.devnode import free_port
from ledger.models import OutboxMessage, OutboxStatus, RelayerState
from ledger.outbox import outbox_backoff, outbox_enqueue, outbox_relay, register_outbox_handler
from tests.ledger.conftest import sign, sign_revoke

pytestmark = pytest.mark.django_db


def grant_payload(grant: signing.Grant, signature: signing.Signature) -> dict[str, object]:
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


def gid(grant: signing.Grant) -> str:
    return "0x" + signing.grant_id(grant).hex()


def enqueue(kind: str, ref: str, payload: dict[str, object]) -> OutboxMessage:
    with transaction.atomic():
        return outbox_enqueue(kind=kind, ref=ref, payload=payload)


def recorded_events(client: ChainClient, grant: signing.Grant) -> list[str]:
    """The tx hash of every GrantRecorded event for this grant."""
    wanted = signing.grant_id(grant)
    return [e.tx for e in client.grant_events() if e.kind == "recorded" and e.grant_id == wanted]


@pytest.fixture
def seen(monkeypatch):  # type: ignore[no-untyped-def]
    """What the handlers were told; the handlers apps registered are set aside for the test."""
    monkeypatch.setattr("ledger.outbox.handlers._HANDLERS", {})  # where outbox_handlers() reads it
    calls: list[tuple[object, ...]] = []
    for kind in ("grant", "revoke", "anchor"):
        register_outbox_handler(
            kind,
            on_confirmed=lambda m: calls.append(("confirmed", m.kind, m.ref, m.tx_hash, m.block_number)),
            on_failed=lambda m: calls.append(("failed", m.kind, m.ref, m.last_error)),
        )
    return calls


@pytest.fixture
def eager_celery():  # type: ignore[no-untyped-def]
    """Queued tasks run in process, as a worker would run them."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def crash_once(monkeypatch):  # type: ignore[no-untyped-def]
    """The next broadcast dies as a killed relay would: after the commit, before the node hears anything."""
    real = ChainClient.broadcast
    state = {"armed": True}

    def broadcast(self: ChainClient, raw: bytes, *, tx_hash: str) -> None:
        if state["armed"]:
            state["armed"] = False
            raise RuntimeError("relay killed")
        real(self, raw, tx_hash=tx_hash)

    monkeypatch.setattr(ChainClient, "broadcast", broadcast)


def test_an_enqueued_grant_is_recorded_on_chain_and_the_handler_sees_its_tx_and_block(
    chain, make_grant, alice_key, seen
):
    grant = make_grant()
    message = enqueue("grant", gid(grant), grant_payload(grant, sign(chain, grant, alice_key)))

    report = outbox_relay()

    message.refresh_from_db()
    assert (report.sent, report.confirmed, report.waiting) == (1, 1, 0)
    assert message.status == OutboxStatus.CONFIRMED
    assert recorded_events(chain, grant) == [message.tx_hash]
    assert message.block_number == chain.receipt(message.tx_hash).block
    assert seen == [("confirmed", "grant", gid(grant), message.tx_hash, message.block_number)]
    assert chain.is_active(signing.grant_id(grant), grant.grantee, grant.scope_commitment) is True


def test_enqueueing_the_same_write_twice_keeps_one_row_and_sends_one_transaction(chain, make_grant, alice_key, seen):
    grant = make_grant()
    payload = grant_payload(grant, sign(chain, grant, alice_key))
    nonce_before = chain.transaction_count("latest")

    with transaction.atomic():
        first = outbox_enqueue(kind="grant", ref=gid(grant), payload=payload)
        second = outbox_enqueue(kind="grant", ref=gid(grant), payload=payload)
    outbox_relay()
    outbox_relay()

    assert first.pk == second.pk
    assert OutboxMessage.objects.count() == 1
    assert chain.transaction_count("latest") == nonce_before + 1
    assert len(recorded_events(chain, grant)) == 1
    assert [call[0] for call in seen] == ["confirmed"]


def test_the_same_key_with_another_payload_is_refused(chain, make_grant, alice_key):
    grant, other = make_grant(), make_grant()
    enqueue("grant", "ref-1", grant_payload(grant, sign(chain, grant, alice_key)))

    with pytest.raises(ValueError, match="different payload"):
        enqueue("grant", "ref-1", grant_payload(other, sign(chain, other, alice_key)))


def test_a_malformed_payload_is_refused_in_the_callers_transaction(db):
    with pytest.raises(ValueError, match="malformed grant payload"):
        enqueue("grant", "ref-1", {"grant": {"patient": "0x01"}, "signature": "0x00"})

    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_enqueue_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError, match=r"inside the operation's transaction\.atomic"):
        outbox_enqueue(kind="anchor", ref="1", payload={"root": "0x" + "11" * 32, "size": 1})


def test_a_relay_killed_between_commit_and_broadcast_sends_the_same_bytes_on_the_next_pass(
    chain, make_grant, alice_key, seen, crash_once
):
    grant = make_grant()
    message = enqueue("grant", gid(grant), grant_payload(grant, sign(chain, grant, alice_key)))
    nonce_before = chain.transaction_count("latest")

    with pytest.raises(RuntimeError, match="relay killed"):
        outbox_relay()
    message.refresh_from_db()
    persisted = (message.status, message.tx_hash, message.nonce, bytes(message.raw_tx), message.broadcast_at)

    first = outbox_relay()
    second = outbox_relay()
    message.refresh_from_db()

    assert persisted[0] == OutboxStatus.SENT
    assert persisted[2] == nonce_before
    assert persisted[4] is None
    assert chain.receipt(persisted[1]) is not None
    assert (first.rebroadcast, first.sent, second.confirmed) == (1, 0, 1)
    assert (message.status, message.tx_hash, message.nonce, bytes(message.raw_tx)) == (
        OutboxStatus.CONFIRMED,
        *persisted[1:4],
    )
    assert recorded_events(chain, grant) == [persisted[1]]
    assert chain.transaction_count("latest") == nonce_before + 1


def test_a_grant_already_on_chain_is_confirmed_without_a_second_transaction(chain, make_grant, alice_key, seen):
    grant = make_grant()
    signature = sign(chain, grant, alice_key)
    direct = chain.record_grant(grant, signature)
    nonce_before = chain.transaction_count("latest")
    message = enqueue("grant", gid(grant), grant_payload(grant, signature))

    report = outbox_relay()

    message.refresh_from_db()
    assert (report.sent, report.confirmed) == (0, 1)
    assert (message.status, message.tx_hash, message.block_number, message.nonce) == (
        OutboxStatus.CONFIRMED,
        direct.hash,
        direct.block,
        None,
    )
    assert chain.transaction_count("latest") == nonce_before
    assert seen == [("confirmed", "grant", gid(grant), direct.hash, direct.block)]


def test_an_invalid_signature_fails_the_message_without_leaving_a_nonce_gap(
    chain, make_grant, alice_key, mallory_key, seen
):
    forged, honest = make_grant(), make_grant()
    nonce_before = chain.transaction_count("latest")
    bad = enqueue("grant", gid(forged), grant_payload(forged, sign(chain, forged, mallory_key)))
    good = enqueue("grant", gid(honest), grant_payload(honest, sign(chain, honest, alice_key)))

    report = outbox_relay()

    bad.refresh_from_db()
    good.refresh_from_db()
    assert (report.failed, report.sent, report.confirmed) == (1, 1, 1)
    assert (bad.status, bad.last_error, bad.nonce, bad.tx_hash) == (OutboxStatus.FAILED, "InvalidSigner", None, "")
    assert (good.status, good.nonce) == (OutboxStatus.CONFIRMED, nonce_before)
    assert chain.transaction_count("latest") == nonce_before + 1
    assert RelayerState.objects.get().next_nonce == nonce_before + 1
    assert seen == [
        ("failed", "grant", gid(forged), "InvalidSigner"),
        ("confirmed", "grant", gid(honest), good.tx_hash, good.block_number),
    ]


def test_a_revocation_waits_for_its_grant_and_then_deactivates_it(chain, make_grant, alice_key, seen):
    grant = make_grant()
    with transaction.atomic():
        outbox_enqueue(kind="grant", ref=gid(grant), payload=grant_payload(grant, sign(chain, grant, alice_key)))
        revoke = outbox_enqueue(
            kind="revoke", ref=gid(grant), payload=grant_payload(grant, sign_revoke(chain, grant, alice_key))
        )

    first = outbox_relay()
    revoke.refresh_from_db()
    held = revoke.status
    second = outbox_relay()
    revoke.refresh_from_db()

    assert (first.confirmed, first.waiting, held) == (1, 1, OutboxStatus.PENDING)
    assert (second.sent, second.confirmed) == (1, 1)
    assert revoke.status == OutboxStatus.CONFIRMED
    assert chain.grant_state(signing.grant_id(grant)).revoked is True
    assert [call[:2] for call in seen] == [("confirmed", "grant"), ("confirmed", "revoke")]


def test_an_anchor_is_sent_by_the_relayer(chain, seen):
    root = secrets.token_bytes(32)
    message = enqueue("anchor", "checkpoint:7", {"root": "0x" + root.hex(), "size": 4096})

    outbox_relay()

    message.refresh_from_db()
    assert message.status == OutboxStatus.CONFIRMED
    assert [(a.root, a.size, a.tx) for a in chain.anchors()] == [(root, 4096, message.tx_hash)]


def test_a_sent_message_waits_for_the_configured_confirmations(chain, make_grant, alice_key, seen, settings):
    settings.CHAIN_CONFIRMATIONS = 3
    grant = make_grant()
    message = enqueue("grant", gid(grant), grant_payload(grant, sign(chain, grant, alice_key)))

    first = outbox_relay()
    chain.w3.provider.ethereum_tester.mine_blocks(1)  # type: ignore[attr-defined]
    second = outbox_relay()
    chain.w3.provider.ethereum_tester.mine_blocks(1)  # type: ignore[attr-defined]
    third = outbox_relay()

    message.refresh_from_db()
    assert [(r.sent, r.waiting, r.confirmed) for r in (first, second, third)] == [(1, 1, 0), (0, 1, 0), (0, 0, 1)]
    assert message.status == OutboxStatus.CONFIRMED
    assert len(seen) == 1


def test_a_grant_recorded_by_someone_else_while_ours_was_in_flight_is_confirmed_with_their_transaction(
    chain, make_grant, alice_key, seen, crash_once
):
    grant = make_grant()
    signature = sign(chain, grant, alice_key)
    message = enqueue("grant", gid(grant), grant_payload(grant, signature))
    with pytest.raises(RuntimeError):
        outbox_relay()  # signed and committed, never broadcast
    other = ChainClient(w3=chain.w3, operator_key=secrets.token_bytes(32), address=chain.address)
    other.operator_fund_from_node(minimum_wei=10**18, amount_wei=10**19)
    theirs = other.record_grant(grant, signature)

    outbox_relay()  # our bytes go out and revert on chain: the grant exists
    message.refresh_from_db()
    ours = message.tx_hash
    outbox_relay()
    message.refresh_from_db()

    assert chain.receipt(ours).succeeded is False
    assert (message.status, message.tx_hash, message.block_number) == (
        OutboxStatus.CONFIRMED,
        theirs.hash,
        theirs.block,
    )
    assert recorded_events(chain, grant) == [theirs.hash]
    assert seen == [("confirmed", "grant", gid(grant), theirs.hash, theirs.block)]


def test_a_nonce_taken_by_another_transaction_is_signed_again_and_recorded_once(
    chain, make_grant, alice_key, seen, crash_once
):
    grant = make_grant()
    message = enqueue("grant", gid(grant), grant_payload(grant, sign(chain, grant, alice_key)))
    with pytest.raises(RuntimeError):
        outbox_relay()
    message.refresh_from_db()
    lost_hash, lost_nonce = message.tx_hash, message.nonce
    chain.anchor(secrets.token_bytes(32), 1)  # the relayer key used elsewhere takes that nonce

    resigned = outbox_relay()
    confirmed = outbox_relay()

    message.refresh_from_db()
    assert (resigned.sent, resigned.confirmed, confirmed.confirmed) == (1, 0, 1)
    assert chain.receipt(lost_hash) is None
    assert (message.status, message.nonce) == (OutboxStatus.CONFIRMED, lost_nonce + 1)
    assert message.tx_hash != lost_hash
    assert recorded_events(chain, grant) == [message.tx_hash]


def test_a_failing_handler_leaves_the_message_to_be_settled_on_a_later_pass(chain, make_grant, alice_key, monkeypatch):
    monkeypatch.setattr("ledger.outbox.handlers._HANDLERS", {})  # where outbox_handlers() reads it
    calls: list[str] = []

    def flaky(message: OutboxMessage) -> None:
        calls.append(message.ref)
        if len(calls) == 1:
            raise RuntimeError("handler bug")

    register_outbox_handler("grant", on_confirmed=flaky)
    grant = make_grant()
    message = enqueue("grant", gid(grant), grant_payload(grant, sign(chain, grant, alice_key)))

    first = outbox_relay()
    message.refresh_from_db()
    after_first = (message.status, message.attempts, message.last_error)
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    second = outbox_relay()
    message.refresh_from_db()

    assert (first.confirmed, first.deferred) == (0, 1)
    assert after_first == (OutboxStatus.SENT, 1, "handler: RuntimeError")
    assert (second.confirmed, message.status) == (1, OutboxStatus.CONFIRMED)
    assert calls == [gid(grant), gid(grant)]
    assert len(recorded_events(chain, grant)) == 1


def test_backoff_doubles_from_the_base_up_to_the_cap(settings):
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 2
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 30

    assert [outbox_backoff(attempts=n).total_seconds() for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def test_a_chain_node_that_is_down_backs_messages_off_and_sends_nothing(db, settings, seen):
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 2
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 5
    from ledger.client import chain_client_reset

    chain_client_reset()
    key = secrets.token_bytes(32)
    grant = signing.Grant(
        patient=signing.patient_address(private_key=key),
        grantee=signing.patient_address(private_key=secrets.token_bytes(32)),
        scope_commitment=signing.new_salt(),
        not_before=1_700_000_000,
        not_after=1_800_000_000,
        salt=signing.new_salt(),
    )
    message = enqueue("grant", gid(grant), grant_payload(grant, signing.Signature.from_bytes(b"\x01" * 64 + b"\x1b")))

    delays, reports = [], []
    for _ in range(4):
        reports.append(outbox_relay())
        message.refresh_from_db()
        delays.append((message.attempts, (message.next_attempt_at - message.last_attempt_at).total_seconds()))
        not_due = outbox_relay()  # before the delay is over the message is left alone
        assert not_due.deferred == 0
        OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    chain_client_reset()

    assert delays == [(1, 2.0), (2, 4.0), (3, 5.0), (4, 5.0)]
    assert all(r.unavailable and r.deferred == 1 and r.sent == 0 for r in reports)
    assert (message.status, message.nonce, message.raw_tx, message.last_error) == (
        OutboxStatus.PENDING,
        None,
        None,
        "ChainUnavailable",
    )
    assert seen == []


@pytest.mark.django_db(transaction=True)
def test_the_commit_that_writes_the_outbox_queues_the_relay_which_records_the_grant(
    chain, make_grant, alice_key, seen, eager_celery
):
    grant = make_grant()

    with transaction.atomic():
        payload = grant_payload(grant, sign(chain, grant, alice_key))
        message = outbox_enqueue(kind="grant", ref=gid(grant), payload=payload)
        message.refresh_from_db()
        before_commit = message.status

    message.refresh_from_db()
    assert before_commit == OutboxStatus.PENDING
    assert message.status == OutboxStatus.CONFIRMED
    assert len(recorded_events(chain, grant)) == 1


def test_the_relay_outbox_command_runs_one_pass(chain, make_grant, alice_key, seen, capsys):
    grant = make_grant()
    enqueue("grant", gid(grant), grant_payload(grant, sign(chain, grant, alice_key)))

    call_command("relay_outbox")

    assert capsys.readouterr().out == "sent=1 rebroadcast=0 confirmed=1 failed=0 waiting=0 deferred=0 chain=up\n"
