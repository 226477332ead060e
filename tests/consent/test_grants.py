"""Issuing and revoking grants: signed by the patient, mirrored, on chain, revocation effective at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from fhir.resources.R4B.consent import Consent

from audit.models import AccessLogEntry
from consent.fhir import grant_as_consent
from consent.gate import Caller, resource_read
from consent.models import Grant, GrantStatus
from consent.services import InvalidGrant, chain_grant, grant_issue, grant_typed_data
from healthledger.errors import ConsentDenied, ResourceNotFound
from ledger import signing
from ledger.client import chain_client_reset
from ledger.models import OutboxMessage
from ledger.outbox import outbox_relay
from records.models import Patient
from tests.patient_device import device_of, grant_revoke_signed

pytestmark = pytest.mark.django_db


def _read(user, patient, resource, purpose="TREAT"):  # type: ignore[no-untyped-def]
    return resource_read(
        caller=Caller(actor=user, purpose=purpose),
        patient=patient,
        resource_type=resource.resource_type,
        resource_id=resource.fhir_id,
    )


def test_an_issued_grant_is_pending_with_one_outbox_write_and_one_log_entry(issue_grant, alice_record):
    grant = issue_grant(relay=False)
    assert grant.status == GrantStatus.PENDING
    assert OutboxMessage.objects.filter(kind="grant", ref=grant.id).count() == 1
    entry = AccessLogEntry.objects.get(action="consent.grant.issue")
    assert (entry.grant_ref, entry.patient_ref, entry.outcome) == (grant.id, alice_record.pk, "permit")


def test_the_grant_is_signed_by_the_patients_own_wallet_and_its_id_is_the_struct_hash(
    issue_grant, alice_record, deployed
):
    grant = issue_grant(relay=False)
    struct = chain_grant(grant)
    address = device_of(alice_record).address
    assert grant.patient_address == Patient.objects.get(pk=alice_record.pk).wallet_address == address
    assert signing.recover_signer(grant_typed_data(grant), signing.signature_parse(grant.signature)) == address
    assert grant.id == "0x" + signing.grant_id(struct).hex() == "0x" + deployed.hash_grant(struct).hex()


def test_a_relayed_grant_is_recorded_with_its_transaction_and_active_on_chain(issue_grant, chain):
    grant = issue_grant()
    assert grant.status == GrantStatus.RECORDED
    assert grant.tx_hash.startswith("0x")
    assert grant.block_number is not None
    g = chain_grant(grant)
    assert chain.is_active(bytes.fromhex(grant.id[2:]), g.grantee, g.scope_commitment) is True


def test_the_chain_sees_no_phi_only_pseudonymous_addresses_and_a_salted_commitment(issue_grant, clinician, chain):
    grant = issue_grant()
    payload = OutboxMessage.objects.get(kind="grant", ref=grant.id).payload
    text = str(payload)
    for plain in ("Observation", "TREAT", "read", clinician.username, str(grant.patient_id)):
        assert plain not in text
    assert payload["grant"]["grantee"] == grant.grantee_address != ""


def test_only_the_patient_can_grant_and_only_to_a_clinician_or_researcher(
    alice_record, clinician, other_clinician, steward, chain
):
    now = timezone.now()
    terms = {
        "resource_types": ["Observation"],
        "actions": ["read"],
        "purpose": "TREAT",
        "not_before": now,
        "not_after": now + timedelta(days=1),
        # A well-formed signature and salts: the terms are refused before any signature is looked at.
        "signature": "0x" + "11" * 65,
        "salt": "0x" + "22" * 32,
        "commitment_salt": "0x" + "33" * 32,
    }
    with pytest.raises(ConsentDenied):
        grant_issue(patient=alice_record, by=clinician, grantee=other_clinician, **terms)
    with pytest.raises(InvalidGrant, match="clinician or researcher"):
        grant_issue(patient=alice_record, by=alice_record.user, grantee=steward, **terms)
    assert Grant.objects.count() == 0
    assert OutboxMessage.objects.count() == 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"resource_types": ["Nonsense"]}, "unknown FHIR resource type"),
        ({"resource_types": []}, "at least one resource type"),
        ({"actions": ["delete"]}, "actions must be among"),
        ({"purpose": "PATRQT"}, "cannot be granted"),
        ({"purpose": "ETREAT"}, "cannot be granted"),
        ({"categories": ["vital-signs"]}, "system|code"),
        ({"not_after_days": -1}, "already have ended"),
        ({"not_after_days": 3000}, "at most five years"),
    ],
)
def test_a_grant_that_cannot_be_honoured_is_refused_and_nothing_is_written(
    issue_grant, alice_record, override, message
):
    device_of(alice_record)  # her key, registered (one outbox row) before she tries
    now = timezone.now()
    if "not_after_days" in override:
        days = override.pop("not_after_days")
        override = {"not_before": now - timedelta(days=2), "not_after": now + timedelta(days=days)}
    with pytest.raises(InvalidGrant, match=message):
        issue_grant(**override)
    assert Grant.objects.count() == 0
    assert list(OutboxMessage.objects.values_list("kind", flat=True)) == ["key"]


def test_a_grant_reads_as_a_valid_r4b_consent_with_its_scope(issue_grant):
    grant = issue_grant(
        resource_types=["Observation", "Condition"],
        categories=["http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"],
    )
    consent = grant_as_consent(grant)
    Consent.model_validate(consent)
    assert consent["status"] == "active"
    assert consent["provision"]["purpose"][0]["code"] == "TREAT"
    assert sorted(c["code"] for c in consent["provision"]["class"]) == ["Condition", "Observation"]
    assert consent["provision"]["period"]["end"].endswith("Z")
    assert {"system": "urn:healthledger:chain-tx", "value": grant.tx_hash} in consent["identifier"]


def test_a_revoked_grant_denies_the_next_read_before_the_chain_hears_of_it(
    issue_grant, alice_record, clinician, an_observation, settings
):
    grant = issue_grant()
    assert _read(clinician, alice_record, an_observation)
    # The chain node goes away: revocation must not depend on it.
    settings.CHAIN_BACKEND = "rpc"
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    chain_client_reset()
    revoked = grant_revoke_signed(grant=grant, by=alice_record.user)
    assert revoked.status == GrantStatus.REVOKED
    with pytest.raises(ResourceNotFound):
        _read(clinician, alice_record, an_observation)
    last = AccessLogEntry.objects.filter(action="records.read").order_by("-id").first()
    assert (last.actor, last.outcome) == (f"user:{clinician.pk}", "deny")
    assert OutboxMessage.objects.get(kind="revoke", ref=grant.id).status == "pending"


def test_the_revocation_reaches_the_chain_and_the_grant_stops_being_active(issue_grant, alice_record, chain):
    grant = issue_grant()
    grant_revoke_signed(grant=grant, by=alice_record.user)
    outbox_relay()
    outbox_relay()
    grant.refresh_from_db()
    assert grant.revocation_tx_hash.startswith("0x")
    g = chain_grant(grant)
    assert chain.is_active(bytes.fromhex(grant.id[2:]), g.grantee, g.scope_commitment) is False


def test_a_grant_revoked_while_still_pending_is_revoked_on_chain_once_it_lands(issue_grant, alice_record, chain):
    grant = issue_grant(relay=False)
    grant_revoke_signed(grant=grant, by=alice_record.user)
    assert not OutboxMessage.objects.filter(kind="revoke").exists()  # a revoke sent first would be refused
    for _ in range(4):
        outbox_relay()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert grant.tx_hash.startswith("0x")
    assert grant.revocation_tx_hash.startswith("0x")
    g = chain_grant(grant)
    assert chain.is_active(bytes.fromhex(grant.id[2:]), g.grantee, g.scope_commitment) is False


def test_nobody_but_the_patient_can_revoke(issue_grant, clinician):
    grant = issue_grant()
    with pytest.raises(ConsentDenied):
        grant_revoke_signed(grant=grant, by=clinician)
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.RECORDED


def test_an_erased_patient_can_no_longer_sign(issue_grant, alice_record):
    from healthledger.errors import KeyDestroyed
    from records.services import patient_erase

    device_of(alice_record)  # she still holds her key: the erased record refuses her signature all the same
    patient_erase(patient=alice_record, actor="system:test")
    with pytest.raises(KeyDestroyed):
        issue_grant(relay=False)
