"""The patient's registered key on chain: registrations and rotations she signs reach ConsentRegistry's key
registry through the outbox, and a grant without a valid signature of that key is refused twice: by the server
before anything is stored, and by the contract itself."""

from __future__ import annotations

import secrets

import pytest

from consent.key_chain import account_of
from consent.keys import patient_key_register, patient_key_release
from consent.keys import registration_typed_data as key_typed_data
from consent.models import Grant, GrantStatus
from consent.services import (
    InvalidSignature,
    chain_grant,
    grant_draft,
    grant_issue,
    grant_revoke,
    grant_typed_data,
    revoke_typed_data,
)
from ledger import signing
from ledger.client import ContractReverted
from ledger.models import OutboxMessage, OutboxStatus
from ledger.outbox import outbox_relay
from records.models import Patient
from tests.consent.test_browser_signatures import _relay, _signed_terms, _terms, browser_sign
from tests.patient_device import device_of, grant_issue_signed, legacy_server_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_key(patient, patient_user, deployed) -> bytes:  # type: ignore[no-untyped-def]
    """Alice (a legacy record) took her key into her browser: the server handed it over once and her browser
    registered it."""
    legacy_server_key(patient)
    key = patient_key_release(patient=patient, by=patient_user)
    address = signing.patient_address(private_key=key)
    signature = browser_sign(key_typed_data(patient=patient, key=address), key)
    patient_key_register(patient=patient, by=patient_user, address=address, signature=signature)
    return key


def _rotate(patient, patient_user, old_key: bytes) -> bytes:  # type: ignore[no-untyped-def]
    new_key = secrets.token_bytes(32)
    new_address = signing.patient_address(private_key=new_key)
    typed = key_typed_data(patient=patient, key=new_address, previous=signing.patient_address(private_key=old_key))
    patient_key_register(
        patient=patient,
        by=patient_user,
        address=new_address,
        signature=browser_sign(typed, new_key),
        previous_signature=browser_sign(typed, old_key),
    )
    return new_key


def test_her_registration_goes_on_chain_and_the_chain_names_her_key_for_her_account(
    patient, patient_user, own_key, deployed
):
    _relay()

    address = signing.patient_address(private_key=own_key)
    assert OutboxMessage.objects.get(kind="key", ref=address).status == OutboxStatus.CONFIRMED
    assert deployed.key_of(account_of(patient)) == address
    assert deployed.account_of(address) == account_of(patient)


def test_a_key_she_created_is_registered_on_chain_before_her_first_grant(patient, patient_user, clinician, deployed):
    address = device_of(patient).address
    grant = grant_issue_signed(**_terms(patient, patient_user, clinician))
    first = outbox_relay()
    _relay()

    assert Patient.objects.get(pk=patient.pk).wallet_address == address
    assert first.failed == 0
    assert list(OutboxMessage.objects.order_by("id").values_list("kind", flat=True)) == ["key", "grant"]
    assert deployed.key_of(account_of(patient)) == address
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.RECORDED


def test_a_grant_signed_by_another_key_is_refused_by_the_server_and_by_the_contract(
    patient, patient_user, clinician, own_key, deployed
):
    _relay()
    operator_key = secrets.token_bytes(32)
    terms = _signed_terms(patient, patient_user, clinician, operator_key)

    with pytest.raises(InvalidSignature):
        grant_issue(**terms)  # type: ignore[arg-type]
    draft = grant_draft(**_terms(patient, patient_user, clinician))  # type: ignore[arg-type]
    forged = signing.signature_parse(browser_sign(grant_typed_data(draft), operator_key))
    with pytest.raises(ContractReverted) as named_her:
        deployed.record_grant(chain_grant(draft), forged)
    # The operator's own key named as the patient: it signs validly, but it is no registered key.
    own = chain_grant(draft)
    own = signing.Grant(
        patient=signing.patient_address(private_key=operator_key),
        grantee=own.grantee,
        scope_commitment=own.scope_commitment,
        not_before=own.not_before,
        not_after=own.not_after,
        salt=own.salt,
    )
    with pytest.raises(ContractReverted) as named_itself:
        deployed.record_grant(
            own,
            signing.grant_sign(
                own, private_key=operator_key, chain_id=deployed.chain_id, verifying_contract=deployed.address
            ),
        )

    assert (named_her.value.reason, named_itself.value.reason) == ("InvalidSigner", "KeyNotCurrent")
    assert Grant.objects.count() == 0
    assert not OutboxMessage.objects.filter(kind="grant").exists()


def test_after_a_rotation_a_grant_by_the_old_key_is_refused_by_the_server_and_by_the_contract(
    patient, patient_user, clinician, own_key, deployed
):
    old_grant = grant_issue(**_signed_terms(patient, patient_user, clinician, own_key))  # type: ignore[arg-type]
    _relay()
    new_key = _rotate(patient, patient_user, own_key)
    _relay()
    assert deployed.key_of(account_of(patient)) == signing.patient_address(private_key=new_key)

    # The server: her draft now names the new key, so the old key's signature recovers the wrong address.
    with pytest.raises(InvalidSignature):
        grant_issue(**_signed_terms(patient, patient_user, clinician, own_key))  # type: ignore[arg-type]
    # The contract, asked directly with a grant the old key signed in its own name.
    stale = chain_grant(grant_draft(**_terms(patient, patient_user, clinician)))  # type: ignore[arg-type]
    stale = signing.Grant(
        patient=signing.patient_address(private_key=own_key),
        grantee=stale.grantee,
        scope_commitment=stale.scope_commitment,
        not_before=stale.not_before,
        not_after=stale.not_after,
        salt=stale.salt,
    )
    with pytest.raises(ContractReverted) as refused:
        deployed.record_grant(
            stale,
            signing.grant_sign(
                stale, private_key=own_key, chain_id=deployed.chain_id, verifying_contract=deployed.address
            ),
        )

    assert refused.value.reason == "KeyNotCurrent"
    # Her grant from before the rotation survives, on chain too, and the new key ends it.
    assert deployed.is_active(
        bytes.fromhex(old_grant.pk[2:]), old_grant.grantee_address, chain_grant(old_grant).scope_commitment
    )
    grant_revoke(grant=old_grant, by=patient_user, signature=browser_sign(revoke_typed_data(old_grant), new_key))
    _relay()
    assert deployed.grant_state(bytes.fromhex(old_grant.pk[2:])).revoked is True
    new_grant = grant_issue(**_signed_terms(patient, patient_user, clinician, new_key))  # type: ignore[arg-type]
    _relay()
    assert Grant.objects.get(pk=new_grant.pk).status == GrantStatus.RECORDED


def test_a_grant_by_a_new_key_waits_for_its_registration_instead_of_failing(
    patient, patient_user, clinician, own_key, deployed
):
    _relay()
    new_key = _rotate(patient, patient_user, own_key)
    grant = grant_issue(**_signed_terms(patient, patient_user, clinician, new_key))  # type: ignore[arg-type]
    rotation = OutboxMessage.objects.get(kind="key", ref=signing.patient_address(private_key=new_key))
    OutboxMessage.objects.filter(pk=rotation.pk).update(next_attempt_at=rotation.created_at.replace(year=2999))

    held = outbox_relay()  # the rotation is not due: the grant must wait, not be sent to a sure revert

    assert (held.failed, held.waiting) == (0, 1)
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    OutboxMessage.objects.filter(pk=rotation.pk).update(next_attempt_at=rotation.created_at)
    _relay()
    _relay()
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.RECORDED
