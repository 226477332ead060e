"""Grants, revocations and key registrations signed in the patient's browser, verified by the server first.

The "browser" here is eth_account signing the JSON typed data the page receives (signing.typed_data_json), so
the tests exercise exactly what the bundled viem code signs; the last tests hold viem's digest of that JSON to
the server's and the contract's.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_typed_data

from audit.models import AccessLogEntry
from consent.keys import InvalidKeyRegistration, patient_key_custody, patient_key_register, patient_key_release
from consent.keys import registration_typed_data as key_typed_data
from consent.models import Grant, GrantStatus, KeyKind
from consent.services import (
    InvalidSignature,
    SignatureRequired,
    grant_draft,
    grant_issue,
    grant_revoke,
    grant_typed_data,
    patient_record_erase,
    revoke_typed_data,
)
from healthledger.errors import ConsentDenied
from ledger import signing
from ledger.client import ContractReverted
from ledger.models import OutboxMessage
from ledger.outbox import outbox_relay
from records.models import Patient
from tests.patient_device import legacy_server_key

REPO = Path(__file__).resolve().parents[2]
VIEM_HASH = REPO / "portal" / "static_src" / "typed_data_hash.mjs"


def browser_sign(typed: dict[str, object], key: bytes) -> str:
    """What the page does: sign the JSON it was given (round-tripped through JSON, as over the wire)."""
    wire = json.loads(json.dumps(signing.typed_data_json(typed)))
    signed = Account.sign_message(encode_typed_data(full_message=wire), private_key=key)
    return "0x" + bytes(signed.signature).hex()


def _terms(patient, patient_user, clinician) -> dict[str, object]:  # type: ignore[no-untyped-def]
    now = timezone.now()
    return {
        "patient": patient,
        "by": patient_user,
        "grantee": clinician,
        "resource_types": ["Observation"],
        "actions": ["read"],
        "purpose": "TREAT",
        "not_before": now - timedelta(minutes=1),
        "not_after": now + timedelta(days=30),
    }


@pytest.fixture
def own_key(patient, patient_user, deployed) -> bytes:  # type: ignore[no-untyped-def]
    """Alice, a legacy record, took her key: the server handed it over once, her browser registered it, the
    server's copy is gone."""
    legacy_server_key(patient)
    key = patient_key_release(patient=patient, by=patient_user)
    address = signing.patient_address(private_key=key)
    signature = browser_sign(key_typed_data(patient=patient, key=address), key)
    patient_key_register(patient=patient, by=patient_user, address=address, signature=signature)
    return key


def _signed_terms(patient, patient_user, clinician, key: bytes) -> dict[str, object]:  # type: ignore[no-untyped-def]
    terms = _terms(patient, patient_user, clinician)
    draft = grant_draft(**terms)  # type: ignore[arg-type]
    return {
        **terms,
        "salt": draft.salt,
        "commitment_salt": draft.commitment_salt,
        "signature": browser_sign(grant_typed_data(draft), key),
    }


def _relay() -> None:
    outbox_relay()
    outbox_relay()


def test_taking_the_key_destroys_the_servers_copy_and_keeps_the_address(patient, patient_user, own_key):
    record = Patient.objects.get(pk=patient.pk)

    assert record.wallet_ciphertext is None
    assert record.wallet_address == signing.patient_address(private_key=own_key)
    assert patient_key_custody(patient) == "browser"
    assert [r.kind for r in record.key_registrations.all()] == [KeyKind.TAKEN]
    with pytest.raises(InvalidKeyRegistration):
        patient_key_release(patient=patient, by=patient_user)


def test_a_grant_the_server_tries_to_record_without_her_signature_is_refused_before_the_chain(
    patient, patient_user, clinician, own_key
):
    with pytest.raises(SignatureRequired):
        grant_issue(**_terms(patient, patient_user, clinician), signature=None)  # type: ignore[arg-type]

    assert Grant.objects.count() == 0
    assert list(OutboxMessage.objects.values_list("kind", flat=True)) == ["key"]  # her registration, nothing else


def test_a_grant_signed_by_another_key_is_refused_before_anything_is_stored(patient, patient_user, clinician, own_key):
    operator_key = secrets.token_bytes(32)
    terms = _signed_terms(patient, patient_user, clinician, operator_key)

    with pytest.raises(InvalidSignature):
        grant_issue(**terms)  # type: ignore[arg-type]

    assert Grant.objects.count() == 0
    assert list(OutboxMessage.objects.values_list("kind", flat=True)) == ["key"]


def test_her_signature_over_other_terms_does_not_carry_to_these(patient, patient_user, clinician, own_key):
    terms = _signed_terms(patient, patient_user, clinician, own_key)
    terms["not_after"] = terms["not_after"] + timedelta(days=300)  # type: ignore[operator]

    with pytest.raises(InvalidSignature):
        grant_issue(**terms)  # type: ignore[arg-type]

    assert Grant.objects.count() == 0


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("", SignatureRequired),
        ("0x12", InvalidSignature),
        ("0x" + "zz" * 65, InvalidSignature),
        ("0x" + "00" * 65, InvalidSignature),
    ],
)
def test_a_malformed_signature_is_refused_with_a_clear_error(patient, patient_user, clinician, own_key, bad, error):
    terms = _signed_terms(patient, patient_user, clinician, own_key)
    terms["signature"] = bad

    with pytest.raises(error):
        grant_issue(**terms)  # type: ignore[arg-type]

    assert Grant.objects.count() == 0


def test_a_grant_signed_in_her_browser_is_stored_and_recorded_on_chain(
    patient, patient_user, clinician, own_key, deployed
):
    terms = _signed_terms(patient, patient_user, clinician, own_key)

    grant = grant_issue(**terms)  # type: ignore[arg-type]
    _relay()

    stored = Grant.objects.get(pk=grant.pk)
    assert stored.signature == terms["signature"]
    assert stored.status == GrantStatus.RECORDED
    assert deployed.grant_state(bytes.fromhex(grant.pk[2:])).recorded is True


def test_the_contract_refuses_a_grant_the_operator_signed_in_her_name(
    patient, patient_user, clinician, own_key, deployed
):
    from consent.services import chain_grant

    draft = grant_draft(**_terms(patient, patient_user, clinician))  # type: ignore[arg-type]
    operator_signature = signing.signature_parse(browser_sign(grant_typed_data(draft), secrets.token_bytes(32)))

    with pytest.raises(ContractReverted) as refused:
        deployed.record_grant(chain_grant(draft), operator_signature)

    assert refused.value.reason == "InvalidSigner"


def test_a_revocation_needs_her_signature_and_takes_effect_with_it(patient, patient_user, clinician, own_key, deployed):
    grant = grant_issue(**_signed_terms(patient, patient_user, clinician, own_key))  # type: ignore[arg-type]
    _relay()

    with pytest.raises(SignatureRequired):
        grant_revoke(grant=grant, by=patient_user, signature=None)
    with pytest.raises(InvalidSignature):
        grant_revoke(
            grant=grant, by=patient_user, signature=browser_sign(revoke_typed_data(grant), secrets.token_bytes(32))
        )
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.RECORDED

    revoked = grant_revoke(grant=grant, by=patient_user, signature=browser_sign(revoke_typed_data(grant), own_key))
    _relay()

    assert revoked.status == GrantStatus.REVOKED
    assert deployed.grant_state(bytes.fromhex(grant.pk[2:])).revoked is True


def test_only_the_patient_revokes_even_with_her_signature(patient, patient_user, clinician, own_key, other_patient):
    grant = grant_issue(**_signed_terms(patient, patient_user, clinician, own_key))  # type: ignore[arg-type]

    with pytest.raises(ConsentDenied):
        grant_revoke(grant=grant, by=other_patient.user, signature=browser_sign(revoke_typed_data(grant), own_key))

    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.PENDING


def test_erasure_with_her_own_key_needs_every_revocation_signed_by_her(patient, patient_user, clinician, own_key):
    grant = grant_issue(**_signed_terms(patient, patient_user, clinician, own_key))  # type: ignore[arg-type]

    with pytest.raises(SignatureRequired):
        patient_record_erase(patient=patient, actor=f"user:{patient_user.pk}")
    assert Patient.objects.get(pk=patient.pk).is_erased is False

    erased = patient_record_erase(
        patient=patient,
        actor=f"user:{patient_user.pk}",
        revocation_signatures={grant.pk: browser_sign(revoke_typed_data(grant), own_key)},
    )

    assert erased.is_erased is True
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REVOKED


def test_a_legacy_server_held_key_signs_nothing_until_she_takes_it(patient, patient_user, clinician, deployed):
    server_copy = legacy_server_key(patient)
    assert patient_key_custody(patient) == "server"

    with pytest.raises(SignatureRequired) as unsigned:
        grant_issue(**_terms(patient, patient_user, clinician), signature=None)  # type: ignore[arg-type]
    # Not even with a signature made by that key: the operator holds a copy of it, so it proves nothing of hers.
    with pytest.raises(SignatureRequired):
        grant_issue(**_signed_terms(patient, patient_user, clinician, server_copy))  # type: ignore[arg-type]

    assert "take your key first" in str(unsigned.value)
    assert Grant.objects.count() == 0
    assert OutboxMessage.objects.count() == 0  # nor a registration signed by the server's copy


def test_a_new_record_has_no_key_and_nothing_can_be_signed_in_her_name(patient, patient_user, clinician, deployed):
    record = Patient.objects.get(pk=patient.pk)

    assert (record.wallet_address, record.wallet_ciphertext) == ("", None)
    assert patient_key_custody(patient) == "none"
    with pytest.raises(SignatureRequired):
        grant_issue(**_terms(patient, patient_user, clinician), signature="")  # type: ignore[arg-type]
    assert Grant.objects.count() == 0
    assert OutboxMessage.objects.count() == 0


def test_a_key_made_in_the_browser_registers_and_signs(patient, patient_user, clinician, deployed):
    Patient.objects.filter(pk=patient.pk).update(wallet_address="", wallet_ciphertext=None)
    key = secrets.token_bytes(32)
    address = signing.patient_address(private_key=key)
    with pytest.raises(SignatureRequired):
        grant_draft(**_terms(patient, patient_user, clinician))  # type: ignore[arg-type]

    registration = patient_key_register(
        patient=patient,
        by=patient_user,
        address=address,
        signature=browser_sign(key_typed_data(patient=patient, key=address), key),
    )
    grant = grant_issue(**_signed_terms(patient, patient_user, clinician, key))  # type: ignore[arg-type]

    assert registration.kind == KeyKind.CREATED
    assert grant.patient_address == address
    assert AccessLogEntry.objects.filter(action="consent.key.created", patient_ref=patient.pk).count() == 1


def test_a_registration_not_signed_by_the_key_it_names_is_refused(patient, patient_user, deployed):
    Patient.objects.filter(pk=patient.pk).update(wallet_address="", wallet_ciphertext=None)
    address = signing.patient_address(private_key=secrets.token_bytes(32))
    forged = browser_sign(key_typed_data(patient=patient, key=address), secrets.token_bytes(32))

    with pytest.raises(InvalidKeyRegistration):
        patient_key_register(patient=patient, by=patient_user, address=address, signature=forged)

    assert patient_key_custody(patient) == "none"


def test_only_the_patient_registers_her_key(patient, other_patient, deployed):
    key = secrets.token_bytes(32)
    address = signing.patient_address(private_key=key)

    with pytest.raises(ConsentDenied):
        patient_key_register(
            patient=patient,
            by=other_patient.user,
            address=address,
            signature=browser_sign(key_typed_data(patient=patient, key=address), key),
        )
    with pytest.raises(ConsentDenied):
        patient_key_release(patient=patient, by=other_patient.user)


def test_a_rotation_needs_the_old_key_too_and_old_grants_survive_revocable_by_either_key(
    patient, patient_user, clinician, own_key
):
    old_grant = grant_issue(**_signed_terms(patient, patient_user, clinician, own_key))  # type: ignore[arg-type]
    new_key = secrets.token_bytes(32)
    new_address = signing.patient_address(private_key=new_key)
    typed = key_typed_data(patient=patient, key=new_address, previous=signing.patient_address(private_key=own_key))

    with pytest.raises(InvalidKeyRegistration):
        patient_key_register(
            patient=patient, by=patient_user, address=new_address, signature=browser_sign(typed, new_key)
        )
    registration = patient_key_register(
        patient=patient,
        by=patient_user,
        address=new_address,
        signature=browser_sign(typed, new_key),
        previous_signature=browser_sign(typed, own_key),
    )

    assert registration.kind == KeyKind.ROTATED
    assert Patient.objects.get(pk=patient.pk).wallet_address == new_address
    new_grant = grant_issue(**_signed_terms(patient, patient_user, clinician, new_key))  # type: ignore[arg-type]
    assert new_grant.patient_address == new_address
    with pytest.raises(InvalidSignature):  # the replaced key signs no new grant
        grant_issue(**_signed_terms(patient, patient_user, clinician, own_key))  # type: ignore[arg-type]
    assert Grant.objects.get(pk=old_grant.pk).status == GrantStatus.PENDING  # the old grant survives
    with pytest.raises(InvalidSignature):
        grant_revoke(
            grant=old_grant,
            by=patient_user,
            signature=browser_sign(revoke_typed_data(old_grant), secrets.token_bytes(32)),
        )
    grant_revoke(grant=old_grant, by=patient_user, signature=browser_sign(revoke_typed_data(old_grant), new_key))
    assert Grant.objects.get(pk=old_grant.pk).status == GrantStatus.REVOKED
    grant_revoke(grant=new_grant, by=patient_user, signature=browser_sign(revoke_typed_data(new_grant), new_key))


# --- One hash in the browser, the server and the contract ------------------------------------------------


def _viem_digest(typed: dict[str, object]) -> bytes:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "viem").exists():
        pytest.skip("node and the npm packages are needed: npm install")
    wire = json.dumps(signing.typed_data_json(typed))
    out = subprocess.run([node, str(VIEM_HASH)], input=wire, capture_output=True, text=True, check=True, timeout=60)
    return bytes.fromhex(out.stdout.strip()[2:])


def test_the_grant_the_browser_signs_hashes_the_same_in_viem_the_server_and_the_contract(
    patient, patient_user, clinician, own_key, deployed
):
    from consent.services import chain_grant

    draft = grant_draft(**_terms(patient, patient_user, clinician))  # type: ignore[arg-type]
    typed = grant_typed_data(draft)
    contract = deployed.contract.functions
    on_chain = signing.keccak(
        b"\x19\x01"
        + bytes(contract.domainSeparator().call())
        + bytes(contract.hashGrant(chain_grant(draft).as_abi_tuple()).call())
    )

    assert _viem_digest(typed) == signing.typed_data_digest(typed) == on_chain
    assert bytes.fromhex(draft.pk[2:]) == bytes(contract.hashGrant(chain_grant(draft).as_abi_tuple()).call())


def test_the_revocation_the_browser_signs_hashes_the_same_in_viem_the_server_and_the_contract(
    patient, patient_user, clinician, own_key, deployed
):
    grant = grant_issue(**_signed_terms(patient, patient_user, clinician, own_key))  # type: ignore[arg-type]
    typed = revoke_typed_data(grant)
    contract = deployed.contract.functions
    revoke_hash = signing.keccak(signing.REVOKE_TYPEHASH + bytes.fromhex(grant.pk[2:]))
    on_chain = signing.keccak(b"\x19\x01" + bytes(contract.domainSeparator().call()) + revoke_hash)

    assert _viem_digest(typed) == signing.typed_data_digest(typed) == on_chain


def test_the_registration_the_browser_signs_hashes_the_same_in_viem_and_the_server(patient, deployed):
    typed = key_typed_data(patient=patient, key=signing.patient_address(private_key=secrets.token_bytes(32)))

    assert _viem_digest(typed) == signing.typed_data_digest(typed)
    assert signing.REGISTRATION_TYPE == "KeyRegistration(bytes32 account,address key,address previous)"


def test_the_operators_erase_command_cannot_revoke_in_her_name_and_erases_nothing(
    patient, patient_user, clinician, own_key
):
    from django.core.management import CommandError, call_command

    grant_issue(**_signed_terms(patient, patient_user, clinician, own_key))  # type: ignore[arg-type]

    with pytest.raises(CommandError) as refused:
        call_command("erase_patient", str(patient.pk), "--no-input")

    assert "has 1 live grant(s) that only she can revoke" in str(refused.value)
    assert Patient.objects.get(pk=patient.pk).is_erased is False
    assert Grant.objects.get().status == GrantStatus.PENDING
