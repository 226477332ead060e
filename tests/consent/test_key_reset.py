"""A patient who lost both her device and her recovery phrase: an operator-assisted key reset that the chain
makes public and slow, that she is told of, and that her registered key can cancel."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Notification
from audit.models import AccessLogEntry
from consent.key_chain import account_of
from consent.key_reset import (
    InvalidKeyReset,
    key_reset_approve,
    key_reset_cancel,
    key_reset_cancel_typed_data,
    key_reset_request,
    key_resets_complete_due,
)
from consent.keys import patient_key_register
from consent.keys import registration_typed_data as key_typed_data
from consent.models import Grant, GrantStatus, KeyKind, KeyRegistration, KeyResetStatus
from consent.services import InvalidSignature, grant_issue, grant_revoke, revoke_typed_data
from healthledger.errors import ConsentDenied
from ledger import signing
from records.models import Patient
from tests.consent.test_browser_signatures import _relay, _signed_terms, browser_sign
from tests.ledger.conftest import chain_now, travel_to
from tests.patient_device import legacy_server_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def lost_key(patient, patient_user, deployed) -> bytes:  # type: ignore[no-untyped-def]
    """Alice's own key, registered on chain; then she loses the device and the phrase."""
    key = secrets.token_bytes(32)
    address = signing.patient_address(private_key=key)
    signature = browser_sign(key_typed_data(patient=patient, key=address), key)
    patient_key_register(patient=patient, by=patient_user, address=address, signature=signature)
    _relay()
    return key


def _request(patient, patient_user, lost_key: bytes):  # type: ignore[no-untyped-def]
    new_key = secrets.token_bytes(32)
    new = signing.patient_address(private_key=new_key)
    typed = key_typed_data(patient=patient, key=new, previous=signing.patient_address(private_key=lost_key))
    reset = key_reset_request(patient=patient, by=patient_user, address=new, signature=browser_sign(typed, new_key))
    return reset, new_key


def test_a_reset_waits_in_public_is_told_to_her_and_then_gives_her_a_new_key(
    patient, patient_user, clinician, lost_key, deployed
):
    old_grant = grant_issue(**_signed_terms(patient, patient_user, clinician, lost_key))  # type: ignore[arg-type]
    _relay()
    reset, new_key = _request(patient, patient_user, lost_key)
    new = signing.patient_address(private_key=new_key)
    assert deployed.pending_key_reset(account_of(patient)) == (signing.ZERO_ADDRESS, 0)  # nothing on chain yet

    call_command("key_reset", "approve", str(reset.pk), "--operator", "desk-3")
    _relay()
    reset.refresh_from_db()
    pending, ready_at = deployed.pending_key_reset(account_of(patient))

    assert reset.status == KeyResetStatus.APPROVED
    assert pending == new
    assert ready_at - chain_now(deployed) == 7 * 24 * 3600
    assert reset.ready_at is not None
    assert reset.ready_at > timezone.now() + timedelta(days=6, hours=23)
    [notice] = Notification.objects.filter(user=patient_user, kind="consent.key.reset")
    assert "cancel" in notice.text
    # While it waits, the new key signs nothing: the lost one is still the registered key.
    with pytest.raises(InvalidSignature):
        grant_issue(**_signed_terms(patient, patient_user, clinician, new_key))  # type: ignore[arg-type]
    assert key_resets_complete_due() == []

    travel_to(deployed, ready_at)
    type(reset).objects.filter(pk=reset.pk).update(ready_at=timezone.now() - timedelta(seconds=1))
    call_command("key_reset", "complete")
    _relay()
    _relay()

    reset.refresh_from_db()
    assert reset.status == KeyResetStatus.COMPLETED
    assert Patient.objects.get(pk=patient.pk).wallet_address == new
    assert deployed.key_of(account_of(patient)) == new
    [event] = [e for e in deployed.contract.events.KeyRegistered.get_logs(from_block=0) if e["args"]["key"] == new]
    assert event["args"]["reset"] is True
    assert KeyRegistration.objects.filter(patient=patient).latest("id").kind == KeyKind.RESET
    assert list(
        AccessLogEntry.objects.filter(patient_ref=patient.pk, action__startswith="consent.key.reset")
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["consent.key.reset.request", "consent.key.reset.approve", "consent.key.reset"]
    # The grant the lost key signed survives; the new key revokes it and signs new ones.
    assert Grant.objects.get(pk=old_grant.pk).status == GrantStatus.RECORDED
    grant_revoke(grant=old_grant, by=patient_user, signature=browser_sign(revoke_typed_data(old_grant), new_key))
    fresh = grant_issue(**_signed_terms(patient, patient_user, clinician, new_key))  # type: ignore[arg-type]
    _relay()
    assert Grant.objects.get(pk=fresh.pk).status == GrantStatus.RECORDED
    assert deployed.grant_state(bytes.fromhex(old_grant.pk[2:])).revoked is True


def test_her_registered_key_cancels_a_reset_she_did_not_ask_for(patient, patient_user, lost_key, deployed):
    reset, _ = _request(patient, patient_user, lost_key)  # say, someone who took over her session
    key_reset_approve(reset=reset, actor="system:key_reset:desk-3")
    _relay()
    typed = key_reset_cancel_typed_data(reset=reset)

    with pytest.raises(InvalidKeyReset):
        key_reset_cancel(patient=patient, by=patient_user, signature=browser_sign(typed, secrets.token_bytes(32)))
    key_reset_cancel(patient=patient, by=patient_user, signature=browser_sign(typed, lost_key))
    _relay()

    reset.refresh_from_db()
    assert reset.status == KeyResetStatus.CANCELLED
    assert deployed.pending_key_reset(account_of(patient)) == (signing.ZERO_ADDRESS, 0)
    assert deployed.key_of(account_of(patient)) == signing.patient_address(private_key=lost_key)
    assert Patient.objects.get(pk=patient.pk).wallet_address == signing.patient_address(private_key=lost_key)


def test_only_she_asks_with_a_key_that_signs_and_only_one_reset_at_a_time(
    patient, patient_user, other_patient, lost_key, deployed
):
    new_key = secrets.token_bytes(32)
    new = signing.patient_address(private_key=new_key)
    typed = key_typed_data(patient=patient, key=new, previous=signing.patient_address(private_key=lost_key))

    with pytest.raises(ConsentDenied):
        key_reset_request(patient=patient, by=other_patient.user, address=new, signature=browser_sign(typed, new_key))
    with pytest.raises(InvalidKeyReset):
        key_reset_request(
            patient=patient, by=patient_user, address=new, signature=browser_sign(typed, secrets.token_bytes(32))
        )
    key_reset_request(patient=patient, by=patient_user, address=new, signature=browser_sign(typed, new_key))
    with pytest.raises(InvalidKeyReset):
        _request(patient, patient_user, lost_key)


def test_a_key_the_operator_still_holds_needs_no_reset(patient, patient_user, deployed):
    legacy_server_key(patient)
    new_key = secrets.token_bytes(32)
    new = signing.patient_address(private_key=new_key)
    typed = key_typed_data(patient=patient, key=new, previous=Patient.objects.get(pk=patient.pk).wallet_address)

    with pytest.raises(InvalidKeyReset):
        key_reset_request(patient=patient, by=patient_user, address=new, signature=browser_sign(typed, new_key))


def test_beat_completes_a_reset_whose_delay_has_passed_and_only_that(patient, patient_user, lost_key, deployed):
    from django.conf import settings

    from consent.tasks import key_resets_complete_task
    from ledger.models import OutboxMessage

    reset, _ = _request(patient, patient_user, lost_key)
    key_reset_approve(reset=reset, actor="system:key_reset:desk-3")
    _relay()

    assert key_resets_complete_task.apply().get() == 0
    type(reset).objects.filter(pk=reset.pk).update(ready_at=timezone.now() - timedelta(seconds=1))
    assert key_resets_complete_task.apply().get() == 1
    assert key_resets_complete_task.apply().get() == 1  # the same outbox row again, not a second write
    assert OutboxMessage.objects.filter(kind="key_reset_done", ref=reset.address).count() == 1
    entry = settings.CELERY_BEAT_SCHEDULE["consent-key-resets-complete"]
    assert entry["task"] == "consent.tasks.key_resets_complete_task"
