"""A chain that forgot the block recording a grant: no read rides on it, and it is recorded again, exactly."""

from __future__ import annotations

import pytest

from consent.models import Grant, GrantStatus
from consent.reconcile import chain_reconcile
from ledger.models import OutboxMessage, OutboxStatus
from ledger.outbox import outbox_relay
from tests.consent.test_reconcile import PATIENT_KEY, issue, lines, recorded_count
from tests.ledger.conftest import register_key

pytestmark = pytest.mark.django_db


def test_a_recorded_grant_whose_block_the_chain_forgot_goes_back_to_pending_and_is_recorded_again(
    chain, patient, clinician
):
    tester = chain.w3.provider.ethereum_tester
    register_key(chain, PATIENT_KEY)  # before the snapshot: the chain forgets the grant, not the key
    snapshot = tester.take_snapshot()
    grant = issue(chain, patient, clinician)
    outbox_relay()
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.RECORDED
    first_tx = OutboxMessage.objects.get(kind="grant", ref=grant.id).tx_hash

    tester.revert_to_snapshot(snapshot)  # the node restarted from a state file without that block
    report = chain_reconcile()

    lost = Grant.objects.get(pk=grant.pk)
    assert (lost.status, lost.tx_hash, lost.block_number) == (GrantStatus.PENDING, "", None)
    assert OutboxMessage.objects.get(kind="grant", ref=grant.id).status == OutboxStatus.SENT
    assert (lines(report), report.in_flight) == ([], 1)

    outbox_relay()
    outbox_relay()

    again = Grant.objects.get(pk=grant.pk)
    assert again.status == GrantStatus.RECORDED
    assert again.tx_hash == first_tx
    assert recorded_count(chain, again) == 1
    assert lines(chain_reconcile()) == []


def test_a_dry_run_takes_nothing_back(chain, patient, clinician):
    tester = chain.w3.provider.ethereum_tester
    register_key(chain, PATIENT_KEY)  # before the snapshot: the chain forgets the grant, not the key
    snapshot = tester.take_snapshot()
    grant = issue(chain, patient, clinician)
    outbox_relay()
    tester.revert_to_snapshot(snapshot)

    report = chain_reconcile(dry_run=True)

    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.RECORDED
    assert len(report.remaining) == 1
