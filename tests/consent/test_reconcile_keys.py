"""reconcile_chain compares each registered key with the key ConsentRegistry names for the record's account:
a match is silent, a key still in the outbox is pending, a difference is reported and exits 1, a reset
completed on chain agrees with the database, and a chain that cannot be asked is "unavailable" (exit 2)."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_typed_data

from consent.key_chain import account_of
from consent.key_reset import key_reset_request
from consent.keys import patient_key_register, registration_typed_data
from consent.models import KeyReset, KeyResetStatus
from consent.reconcile import chain_reconcile
from healthledger.errors import ChainUnavailable
from ledger import signing
from ledger.models import OutboxMessage, OutboxStatus
from ledger.outbox import outbox_relay
from records.models import Patient
from tests.ledger.conftest import travel_to

pytestmark = pytest.mark.django_db


def _sign(typed: dict[str, object], key: bytes) -> str:
    wire = json.loads(json.dumps(signing.typed_data_json(typed)))
    return "0x" + bytes(Account.sign_message(encode_typed_data(full_message=wire), private_key=key).signature).hex()


def _relay() -> None:
    for _ in range(3):
        outbox_relay()


def registered(patient, patient_user) -> tuple[bytes, str]:  # type: ignore[no-untyped-def]
    """Her browser's key, registered by its own signature (queued for the chain, not relayed yet)."""
    Patient.objects.filter(pk=patient.pk).update(wallet_address="", wallet_ciphertext=None)
    key = secrets.token_bytes(32)
    address = signing.patient_address(private_key=key)
    typed = registration_typed_data(patient=patient, key=address)
    patient_key_register(patient=patient, by=patient_user, address=address, signature=_sign(typed, key))
    return key, address


def lines(report) -> list[str]:  # type: ignore[no-untyped-def]
    return [difference.describe(dry_run=report.dry_run) for difference in report.differences]


def test_a_key_the_chain_names_for_her_account_matches_and_is_silent(patient, patient_user, deployed):
    _, address = registered(patient, patient_user)
    _relay()

    report = chain_reconcile()

    assert deployed.key_of(account_of(patient)) == address
    assert (report.differences, report.pending, report.in_flight, report.keys_checked) == ([], [], 0, 1)


def test_a_key_still_in_the_outbox_is_pending_not_a_difference(patient, patient_user, deployed, capsys):
    _, address = registered(patient, patient_user)

    report = chain_reconcile(dry_run=True)
    call_command("reconcile_chain", "--dry-run")  # exit 0: pending is no difference

    expected = f"key of record {patient.pk}: pending: {address} is in the outbox (pending), not mined yet"
    assert (report.differences, report.pending, report.in_flight, report.keys_checked) == ([], [expected], 1, 1)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        expected,
        "reconcile: 0 difference(s), 0 repaired, 0 remaining; 1 write(s) in flight; "
        "checked 0 grant(s), 1 key(s) and 0 anchor(s) (dry run: nothing changed)",
    ]


def test_an_address_in_the_database_that_the_chain_does_not_name_is_a_discrepancy_and_exits_1(
    patient, patient_user, deployed, capsys
):
    _, address = registered(patient, patient_user)
    _relay()
    swapped = signing.patient_address(private_key=secrets.token_bytes(32))
    Patient.objects.filter(pk=patient.pk).update(wallet_address=swapped)  # as an operator's quiet swap would

    with pytest.raises(CommandError) as remain:
        call_command("reconcile_chain")

    line = (
        f"key of record {patient.pk}: the database registers {swapped}, the chain names {address} "
        "-> not repairable here"
    )
    assert remain.value.returncode == 1
    assert capsys.readouterr().out.splitlines()[0] == line
    assert lines(chain_reconcile()) == [line]
    assert Patient.objects.get(pk=patient.pk).wallet_address == swapped  # reported, never overwritten


def test_a_registration_the_chain_refused_is_a_discrepancy_naming_the_outbox(patient, patient_user, deployed):
    _, address = registered(patient, patient_user)
    OutboxMessage.objects.filter(kind="key", ref=address).update(status=OutboxStatus.FAILED)

    report = chain_reconcile()

    assert lines(report) == [
        f"key of record {patient.pk}: the database registers {address}, the chain names no key; "
        f"the outbox settled the registration of {address} as failed -> not repairable here"
    ]


def _reset_to_new_key(patient, patient_user, deployed, lost: str) -> str:  # type: ignore[no-untyped-def]
    """The whole operator-assisted reset: asked, approved, its public delay waited out, completed on chain."""
    new_key = secrets.token_bytes(32)
    new = signing.patient_address(private_key=new_key)
    typed = registration_typed_data(patient=patient, key=new, previous=lost)
    reset = key_reset_request(patient=patient, by=patient_user, address=new, signature=_sign(typed, new_key))
    call_command("key_reset", "approve", str(reset.pk), "--operator", "desk-3")
    _relay()
    _, ready_at = deployed.pending_key_reset(account_of(patient))
    travel_to(deployed, ready_at)
    KeyReset.objects.filter(pk=reset.pk).update(ready_at=timezone.now() - timedelta(seconds=1))
    call_command("key_reset", "complete")
    _relay()
    assert KeyReset.objects.get(pk=reset.pk).status == KeyResetStatus.COMPLETED
    return new


def test_a_reset_completed_on_chain_agrees_with_the_database(patient, patient_user, deployed):
    _, lost = registered(patient, patient_user)
    _relay()

    new = _reset_to_new_key(patient, patient_user, deployed, lost)
    report = chain_reconcile()

    assert deployed.key_of(account_of(patient)) == new
    assert Patient.objects.get(pk=patient.pk).wallet_address == new
    assert (report.differences, report.pending, report.keys_checked) == ([], [], 1)


def test_a_database_that_still_names_the_key_a_completed_reset_replaced_is_a_discrepancy(
    patient, patient_user, deployed
):
    _, lost = registered(patient, patient_user)
    _relay()
    new = _reset_to_new_key(patient, patient_user, deployed, lost)
    Patient.objects.filter(pk=patient.pk).update(wallet_address=lost)  # say, a database restored from before it

    report = chain_reconcile()

    assert lines(report) == [
        f"key of record {patient.pk}: the database registers {lost}, the chain names {new}; "
        f"the outbox settled the registration of {lost} as confirmed -> not repairable here"
    ]


def test_a_chain_that_cannot_answer_for_the_keys_is_unavailable_not_a_crash(
    patient, patient_user, deployed, monkeypatch
):
    registered(patient, patient_user)
    _relay()

    def down(account: bytes) -> str:
        raise ChainUnavailable("chain node unavailable (ConnectionError)")

    monkeypatch.setattr(deployed, "key_of", down)  # the node stops answering after the grants were compared
    with pytest.raises(CommandError) as unreachable:
        call_command("reconcile_chain")

    assert unreachable.value.returncode == 2
    assert str(unreachable.value) == "chain UNREACHABLE: chain node unavailable (ConnectionError)"
    assert ChainUnavailable("x").status == 503
