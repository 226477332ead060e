"""reconcile_chain: every difference between the database and the chain, repaired where that is safe."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from audit.anchoring import access_log_anchor
from audit.models import AccessLogAnchor, AnchorStatus
from consent.models import Grant, GrantStatus
from consent.reconcile import chain_reconcile
from consent.services import _chain_payload
from ledger import signing
from ledger.client import ChainClient, chain_client, chain_client_reset
from ledger.devnode import ANVIL_BINARY, anvil_running, free_port
from ledger.models import OutboxMessage, OutboxStatus
from ledger.outbox import outbox_enqueue, outbox_relay
from ledger.services import deployment_create
from tests.audit.anchor_support import anchor_and_relay, seal
from tests.ledger.conftest import (
    DAY,
    chain_now,
    register_key,
)

pytestmark = pytest.mark.django_db

PATIENT_KEY = secrets.token_bytes(32)


def issue(  # type: ignore[no-untyped-def]
    client: ChainClient | None,
    patient,
    grantee,
    *,
    enqueue: bool = True,
    domain: tuple[int, str] | None = None,
    now: int | None = None,
) -> Grant:
    """A pending grant row signed with the patient's key for this chain, and its outbox write.

    `domain` (chain id, contract address) and `now` stand in for the client while the node is down."""
    if client is not None:
        domain, now = (client.chain_id, client.address), chain_now(client)
        if client.account_of(signing.patient_address(private_key=PATIENT_KEY)) == bytes(32):
            register_key(client, PATIENT_KEY)  # the contract records grants of registered keys only
    assert domain is not None
    assert now is not None
    commitment_salt = signing.new_salt()
    struct = signing.Grant(
        patient=signing.patient_address(private_key=PATIENT_KEY),
        grantee=signing.patient_address(private_key=secrets.token_bytes(32)),
        scope_commitment=signing.scope_commitment(commitment_salt=commitment_salt, scope=b'{"types":["Observation"]}'),
        not_before=now,
        not_after=now + DAY,
        salt=signing.new_salt(),
    )
    signature = signing.grant_sign(struct, private_key=PATIENT_KEY, chain_id=domain[0], verifying_contract=domain[1])
    with transaction.atomic():
        grant = Grant.objects.create(
            id="0x" + signing.grant_id(struct).hex(),
            patient=patient,
            grantee=grantee,
            resource_types=["Observation"],
            actions=["read"],
            purpose="TREAT",
            not_before=datetime.fromtimestamp(struct.not_before, UTC),
            not_after=datetime.fromtimestamp(struct.not_after, UTC),
            patient_address=struct.patient,
            grantee_address=struct.grantee,
            salt="0x" + struct.salt.hex(),
            commitment_salt="0x" + commitment_salt.hex(),
            scope_commitment="0x" + struct.scope_commitment.hex(),
            signature="0x" + signature.to_bytes().hex(),
        )
        if enqueue:
            outbox_enqueue(kind="grant", ref=grant.id, payload=_chain_payload(grant, grant.signature))
    return grant


def revoke_in_db(client: ChainClient, grant: Grant) -> Grant:
    """What grant_revoke stores (status, time, the patient's revocation signature), without the outbox write."""
    signature = signing.revoke_sign(
        bytes.fromhex(grant.id[2:]),
        private_key=PATIENT_KEY,
        chain_id=client.chain_id,
        verifying_contract=client.address,
    )
    Grant.objects.filter(pk=grant.pk).update(
        status=GrantStatus.REVOKED, revoked_at=datetime.now(UTC), revocation_signature="0x" + signature.to_bytes().hex()
    )
    return Grant.objects.get(pk=grant.pk)


def lines(report) -> list[str]:  # type: ignore[no-untyped-def]
    return [difference.describe(dry_run=report.dry_run) for difference in report.differences]


def recorded_count(client: ChainClient, grant: Grant) -> int:
    return sum(1 for e in client.grant_events() if e.kind == "recorded" and "0x" + e.grant_id.hex() == grant.id)


def test_grants_and_anchors_relayed_normally_show_no_difference(chain, patient, clinician):
    grants = [issue(chain, patient, clinician) for _ in range(3)]
    outbox_relay()
    seal(8, per_checkpoint=4)
    anchor_and_relay()

    report = chain_reconcile()

    assert [Grant.objects.get(pk=g.pk).status for g in grants] == [GrantStatus.RECORDED] * 3
    assert (report.differences, report.in_flight, report.grants_checked, report.anchors_checked) == ([], 0, 3, 1)


def test_writes_still_in_the_outbox_are_in_flight_not_differences(chain, patient, clinician):
    issue(chain, patient, clinician)
    seal(4, per_checkpoint=4)
    access_log_anchor(force=True)

    report = chain_reconcile()

    assert (report.differences, report.in_flight) == ([], 2)


def test_a_grant_on_chain_that_the_database_holds_as_pending_is_marked_recorded(chain, patient, clinician):
    grant = issue(chain, patient, clinician)
    outbox_relay()
    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.PENDING, tx_hash="", block_number=None)
    [event] = chain.grant_events()

    report = chain_reconcile()

    assert lines(report) == [
        f"grant {grant.id}: on chain (tx {event.tx}), pending in the database "
        "-> repaired: marked recorded with the chain's transaction"
    ]
    grant.refresh_from_db()
    assert (grant.status, grant.tx_hash, grant.block_number) == (GrantStatus.RECORDED, event.tx, event.block)
    assert report.remaining == []


def test_a_grant_on_chain_that_the_relay_marked_failed_is_marked_recorded(chain, patient, clinician):
    grant = issue(chain, patient, clinician)
    outbox_relay()
    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.FAILED)

    report = chain_reconcile()

    assert [d.repaired for d in report.differences] == [True]
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.RECORDED


def test_a_recorded_grant_the_chain_never_saw_is_queued_again_when_the_outbox_has_no_row(chain, patient, clinician):
    grant = issue(chain, patient, clinician, enqueue=False)
    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.RECORDED, tx_hash="0x" + "aa" * 32, block_number=3)

    first = chain_reconcile()
    outbox_relay()
    second = chain_reconcile()

    assert lines(first) == [
        f"grant {grant.id}: recorded in the database (tx 0x{'aa' * 32}), unknown on chain "
        "-> repaired: queued the grant again"
    ]
    assert recorded_count(chain, grant) == 1
    assert lines(second) == []
    assert Grant.objects.get(pk=grant.pk).tx_hash == chain.grant_events()[0].tx


def test_a_recorded_grant_whose_outbox_write_settled_cannot_be_resent_and_remains(chain, patient, clinician):
    grant = issue(chain, patient, clinician)
    with transaction.atomic():  # the chain never mined it, yet the outbox row says confirmed (a reset chain, say)
        OutboxMessage.objects.filter(ref=grant.id).update(status=OutboxStatus.CONFIRMED)
        Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.RECORDED, tx_hash="0x" + "bb" * 32)

    report = chain_reconcile()

    assert lines(report) == [
        f"grant {grant.id}: recorded in the database (tx 0x{'bb' * 32}), unknown on chain; "
        "the outbox settled its write as confirmed, so it cannot be resent from here -> not repairable here"
    ]
    assert len(report.remaining) == 1


def test_a_grant_revoked_in_the_database_but_active_on_chain_gets_its_revocation_queued(chain, patient, clinician):
    grant = issue(chain, patient, clinician)
    outbox_relay()
    revoke_in_db(chain, Grant.objects.get(pk=grant.pk))

    first = chain_reconcile()
    outbox_relay()
    second = chain_reconcile()

    assert lines(first) == [
        f"grant {grant.id}: revoked in the database, active on chain -> repaired: queued the revocation"
    ]
    assert chain.grant_state(bytes.fromhex(grant.id[2:])).revoked is True
    assert lines(second) == []
    assert (
        Grant.objects.get(pk=grant.pk).revocation_tx_hash
        == next(e for e in chain.grant_events() if e.kind == "revoked").tx
    )


def test_a_grant_the_patient_revoked_on_chain_is_revoked_in_the_database(chain, patient, clinician):
    grant = issue(chain, patient, clinician)
    outbox_relay()
    revoked = revoke_in_db(chain, Grant.objects.get(pk=grant.pk))
    with transaction.atomic():
        outbox_enqueue(kind="revoke", ref=grant.id, payload=_chain_payload(revoked, revoked.revocation_signature))
    outbox_relay()
    Grant.objects.filter(pk=grant.pk).update(
        status=GrantStatus.RECORDED, revoked_at=None, revocation_tx_hash="", revocation_block_number=None
    )
    [revocation] = [e for e in chain.grant_events() if e.kind == "revoked"]

    report = chain_reconcile()

    assert lines(report) == [
        f"grant {grant.id}: revoked on chain (tx {revocation.tx}), recorded in the database "
        "-> repaired: marked revoked (the patient signed the revocation)"
    ]
    grant.refresh_from_db()
    assert (grant.status, grant.revocation_tx_hash) == (GrantStatus.REVOKED, revocation.tx)


def test_a_window_that_differs_from_the_chain_is_reported_and_not_repaired(chain, patient, clinician):
    grant = issue(chain, patient, clinician)
    outbox_relay()
    grant.refresh_from_db()
    start, end = int(grant.not_before.timestamp()), int(grant.not_after.timestamp())
    Grant.objects.filter(pk=grant.pk).update(not_after=datetime.fromtimestamp(end + 3600, UTC))

    report = chain_reconcile()

    assert lines(report) == [
        f"grant {grant.id}: window differs: database {start}..{end + 3600}, chain {start}..{end} -> not repairable here"
    ]
    assert len(report.remaining) == 1


def test_a_grant_on_chain_unknown_to_the_database_is_reported(chain, patient, clinician):
    grant = issue(chain, patient, clinician)
    outbox_relay()
    [event] = chain.grant_events()
    Grant.objects.filter(pk=grant.pk).delete()

    report = chain_reconcile()

    assert lines(report) == [
        f"grant {grant.id}: on chain (tx {event.tx}, block {event.block}), unknown to the database "
        "-> not repairable here"
    ]


def test_a_pending_grant_whose_write_failed_is_marked_failed(chain, patient, clinician):
    grant = issue(chain, patient, clinician)
    OutboxMessage.objects.filter(ref=grant.id).update(status=OutboxStatus.FAILED)

    report = chain_reconcile()

    assert lines(report) == [f"grant {grant.id}: pending, but the chain refused its write -> repaired: marked failed"]
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.FAILED


def test_an_anchor_on_chain_still_pending_in_the_database_is_marked_anchored(chain):
    seal(4, per_checkpoint=4)
    [anchor] = anchor_and_relay()
    AccessLogAnchor.objects.filter(pk=anchor.pk).update(status=AnchorStatus.PENDING, tx_hash="", block_number=None)
    [on_chain] = chain.anchors()

    report = chain_reconcile()

    assert lines(report) == [
        f"anchor {anchor.pk} (seq 0..3, checkpoint {anchor.checkpoint_id}): on chain (tx {on_chain.tx}), "
        "pending in the database -> repaired: marked anchored with the chain's transaction"
    ]
    anchor.refresh_from_db()
    assert (anchor.status, anchor.tx_hash, anchor.block_number) == (AnchorStatus.ANCHORED, on_chain.tx, on_chain.block)


def test_an_anchor_marked_anchored_but_not_on_chain_and_one_on_chain_not_in_the_database_are_reported(chain):
    seal(4, per_checkpoint=4)
    [anchored] = anchor_and_relay()
    seal(4, start=50, per_checkpoint=4)
    [unsent] = access_log_anchor(force=True)
    OutboxMessage.objects.filter(kind="anchor", ref=str(unsent.pk)).update(status=OutboxStatus.CONFIRMED)
    AccessLogAnchor.objects.filter(pk=unsent.pk).update(status=AnchorStatus.ANCHORED, tx_hash="0x" + "cc" * 32)
    AccessLogAnchor.objects.filter(pk=anchored.pk).delete()
    [on_chain] = chain.anchors()

    report = chain_reconcile()

    assert lines(report) == [
        f"anchor {unsent.pk} (seq 4..7, checkpoint {unsent.checkpoint_id}): anchored in the database "
        f"(tx 0x{'cc' * 32}), not on chain -> not repairable here",
        f"chain anchor seq 0..3: on chain (tx {on_chain.tx}, root {on_chain.root.hex()[:16]}…), not in the database "
        "-> not repairable here",
    ]


def test_a_pending_anchor_nothing_is_sending_is_failed_so_its_range_is_anchored_again(chain):
    seal(4, per_checkpoint=4)
    [lost] = access_log_anchor(force=True)
    OutboxMessage.objects.filter(kind="anchor").delete()

    report = chain_reconcile()
    [again] = access_log_anchor(force=True)
    outbox_relay()

    assert [d.repaired for d in report.differences] == [True]
    assert AccessLogAnchor.objects.get(pk=lost.pk).status == AnchorStatus.FAILED
    assert (again.first_seq, again.last_seq) == (0, 3)
    assert chain_reconcile().differences == []


def test_a_dry_run_repairs_nothing_and_says_what_it_would_do(chain, patient, clinician):
    grant = issue(chain, patient, clinician)
    outbox_relay()
    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.PENDING)

    report = chain_reconcile(dry_run=True)

    assert lines(report) == [
        f"grant {grant.id}: on chain (tx {chain.grant_events()[0].tx}), pending in the database "
        "-> would repair: marked recorded with the chain's transaction"
    ]
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    assert len(report.remaining) == 1


def test_grants_accepted_while_the_chain_is_down_are_recorded_once_when_it_is_back(
    chain, patient, clinician, monkeypatch
):
    from ledger import client as client_module

    dead = ChainClient.for_url("http://127.0.0.1:9", operator_key=secrets.token_bytes(32), timeout=1)
    monkeypatch.setattr(client_module, "_client", dead)
    grants = [issue(chain, patient, clinician) for _ in range(2)]
    down = outbox_relay()
    with pytest.raises(CommandError) as unreachable:
        call_command("reconcile_chain")
    pending = [Grant.objects.get(pk=g.pk).status for g in grants]

    monkeypatch.setattr(client_module, "_client", chain)
    OutboxMessage.objects.update(next_attempt_at=datetime.now(UTC))  # the backoff has passed
    back = outbox_relay()
    outbox_relay()

    assert (down.unavailable, down.sent, down.deferred) == (True, 0, 2)
    assert unreachable.value.returncode == 2
    assert pending == [GrantStatus.PENDING, GrantStatus.PENDING]
    assert (back.sent, back.confirmed) == (2, 2)
    assert [recorded_count(chain, g) for g in grants] == [1, 1]
    assert [Grant.objects.get(pk=g.pk).status for g in grants] == [GrantStatus.RECORDED] * 2
    call_command("reconcile_chain")  # exit 0: no difference remains


def test_the_command_prints_each_difference_and_a_summary_and_exits_1_when_some_remain(
    chain, patient, clinician, capsys
):
    grant = issue(chain, patient, clinician)
    outbox_relay()
    Grant.objects.filter(pk=grant.pk).update(not_before=datetime.fromtimestamp(1, UTC))

    with pytest.raises(CommandError) as remain:
        call_command("reconcile_chain")

    out = capsys.readouterr().out.splitlines()
    assert remain.value.returncode == 1
    assert out[0].startswith(f"grant {grant.id}: window differs: database 1..")
    assert out[1] == (
        "reconcile: 1 difference(s), 0 repaired, 1 remaining; 0 write(s) in flight; "
        "checked 1 grant(s), 0 key(s) and 0 anchor(s)"
    )


# Outside a test transaction, as an operator runs it: every repair must bring its own transaction.
@pytest.mark.django_db(transaction=True)
def test_the_command_exits_0_after_repairing_every_difference(chain, patient, clinician, capsys):
    grant = issue(chain, patient, clinician)
    seal(4, per_checkpoint=4)
    [anchor] = anchor_and_relay()
    outbox_relay()
    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.PENDING)
    AccessLogAnchor.objects.filter(pk=anchor.pk).update(status=AnchorStatus.PENDING)

    call_command("reconcile_chain")

    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (
        "reconcile: 2 difference(s), 2 repaired, 0 remaining; 0 write(s) in flight; "
        "checked 1 grant(s), 0 key(s) and 1 anchor(s)"
    )
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.RECORDED
    assert AccessLogAnchor.objects.get(pk=anchor.pk).status == AnchorStatus.ANCHORED


def test_the_command_exits_2_when_the_chain_is_unreachable(settings):
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    chain_client_reset()
    try:
        with pytest.raises(CommandError) as unreachable:
            call_command("reconcile_chain", "--dry-run")
    finally:
        chain_client_reset()

    assert unreachable.value.returncode == 2
    assert str(unreachable.value).startswith("chain UNREACHABLE: chain node unavailable")


@pytest.mark.integration
@pytest.mark.skipif(not ANVIL_BINARY.exists(), reason="anvil is not installed (npm install)")
def test_with_anvil_down_grants_and_anchors_wait_then_land_once_and_reconcile_finds_no_difference(
    patient, clinician, settings, tmp_path
):
    port, state = free_port(), tmp_path / "anvil-state.json"
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{port}"
    settings.CHAIN_TIMEOUT_SECONDS = 2
    chain_client_reset()
    try:
        with anvil_running(port=port, state=state):
            deployment = deployment_create()
            register_key(chain_client(), PATIENT_KEY)
            _, now = chain_client().latest_block()
        # The node is down: the patient's grants and the sealed log are accepted and wait in the outbox.
        grants = [
            issue(None, patient, clinician, domain=(deployment.chain_id, deployment.address), now=now) for _ in range(3)
        ]
        seal(8, per_checkpoint=4)
        [anchor] = access_log_anchor(force=True)
        down = outbox_relay()
        with pytest.raises(CommandError) as unreachable:
            call_command("reconcile_chain")
        while_down = [Grant.objects.get(pk=g.pk).status for g in grants]

        with anvil_running(port=port, state=state):
            OutboxMessage.objects.update(next_attempt_at=timezone.now())  # the backoff has passed
            back = outbox_relay()
            client = chain_client()
            recorded = [recorded_count(client, g) for g in grants]
            anchors_on_chain = client.anchors(from_block=deployment.block)
            report = chain_reconcile()
    finally:
        chain_client_reset()

    assert (down.unavailable, down.sent, down.deferred) == (True, 0, 4)
    assert unreachable.value.returncode == 2
    assert while_down == [GrantStatus.PENDING] * 3
    assert (back.sent, back.confirmed, back.failed) == (4, 4, 0)
    assert recorded == [1, 1, 1]
    assert [(a.root, a.size) for a in anchors_on_chain] == [(bytes(anchor.root), 8)]
    assert [Grant.objects.get(pk=g.pk).status for g in grants] == [GrantStatus.RECORDED] * 3
    assert AccessLogAnchor.objects.get(pk=anchor.pk).status == AnchorStatus.ANCHORED
    assert (report.differences, report.in_flight, report.grants_checked, report.anchors_checked) == ([], 0, 3, 1)
