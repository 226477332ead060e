"""The key pages and browser-signed sharing: the server sees addresses and signatures, and verifies them first.

The browser is stood in for by eth_account signing the JSON the page embeds (what keys.js signs with viem).
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from consent.models import Grant, GrantStatus, KeyKind, KeyRegistration
from ledger import signing
from ledger.models import OutboxMessage
from records.models import Patient
from tests.patient_device import legacy_server_key
from tests.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def legacy_records(patient, other_patient) -> None:  # type: ignore[no-untyped-def]
    """Alice and Bob have records from before self-custody: the operator holds a sealed copy of each one's key."""
    legacy_server_key(patient)
    legacy_server_key(other_patient)


def _page_json(html: str, element_id: str) -> object:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None, f"no {element_id} in the page"
    return json.loads(found.group(1))


def _sign(typed: object, key: bytes) -> str:
    signed = Account.sign_message(encode_typed_data(full_message=typed), private_key=key)  # type: ignore[arg-type]
    return "0x" + bytes(signed.signature).hex()


def _take_key(alice) -> bytes:  # type: ignore[no-untyped-def]
    page = alice.get("/keys/").content.decode()
    template = _page_json(page, "registration-typed-data")
    key = bytes.fromhex(alice.post("/keys/take/", {"password": PASSWORD}).json()["private_key"][2:])
    address = signing.patient_address(private_key=key)
    template["message"]["key"] = address  # type: ignore[index]
    answer = alice.post("/keys/register/", {"address": address, "signature": _sign(template, key)})
    assert answer.status_code == 200, answer.content
    return key


def _form(clinician) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        "grantee": clinician.pk,
        "what": ["measurements"],
        "purpose": "TREAT",
        "actions": ["read"],
        "duration": "30d",
    }


def _review(alice, clinician):  # type: ignore[no-untyped-def]
    """The sharing form's choices, then its review page: the plain words and the typed data to sign."""
    assert alice.post("/sharing/new/what/", _form(clinician)).status_code == 302
    return alice.get("/sharing/new/review/")


def test_the_key_page_says_the_operator_holds_the_key_until_she_takes_it(alice, patient, deployed):
    before = alice.get("/keys/").content.decode()
    _take_key(alice)
    after = alice.get("/keys/").content.decode()

    assert "The operator of this service holds your key today" in before
    assert 'data-key-status="browser"' in after
    assert Patient.objects.get(pk=patient.pk).wallet_ciphertext is None
    assert KeyRegistration.objects.get(patient=patient).kind == KeyKind.TAKEN
    assert alice.post("/keys/take/", {"password": PASSWORD}).status_code == 400


def test_the_sharing_page_warns_while_the_operator_holds_the_key(alice, alice_record, deployed):
    page = alice.get("/sharing/").content.decode()

    assert "The operator of this service holds your signing key" in page


def test_a_clinician_and_another_patient_reach_no_ones_key(carol, bob, patient, other_patient, deployed):
    assert carol.get("/keys/").status_code == 403
    assert carol.post("/keys/take/").status_code == 403
    taken = bob.post("/keys/take/", {"password": PASSWORD})

    # Bob's request concerns Bob's own record only; Alice's key is never in it.
    alice_address = Patient.objects.get(pk=patient.pk).wallet_address
    assert signing.patient_address(private_key=bytes.fromhex(taken.json()["private_key"][2:])) != alice_address
    assert Patient.objects.get(pk=patient.pk).wallet_ciphertext is not None


def test_a_registration_signed_by_another_key_is_refused_and_the_servers_copy_kept(alice, patient, deployed):
    page = alice.get("/keys/").content.decode()
    template = _page_json(page, "registration-typed-data")
    address = Patient.objects.get(pk=patient.pk).wallet_address
    template["message"]["key"] = address  # type: ignore[index]

    answer = alice.post("/keys/register/", {"address": address, "signature": _sign(template, secrets.token_bytes(32))})

    assert answer.status_code == 400
    assert answer.json() == {"error": "the registration is not signed by the key it names"}
    assert Patient.objects.get(pk=patient.pk).wallet_ciphertext is not None


def test_a_legacy_record_signs_nothing_until_she_takes_her_key(alice, alice_record, clinician, deployed):
    review = _review(alice, clinician)
    html = review.content.decode()

    refused = alice.post("/sharing/new/review/", {"signature": ""})

    assert review.status_code == 200
    assert "The operator of this service holds your signing key" in html
    assert "Take my key" in html
    assert "data-sign-typed" not in html  # no form that would grant
    assert refused.status_code == 400
    assert "take your key first" in refused.content.decode()
    assert Grant.objects.count() == 0
    assert OutboxMessage.objects.count() == 0


def test_with_her_own_key_the_form_leads_to_a_plain_words_page_and_her_signature_grants(
    alice, alice_record, clinician, deployed
):
    key = _take_key(alice)

    review = _review(alice, clinician)
    html = review.content.decode()
    typed = _page_json(html, "typed-data")
    check = _page_json(html, "scope-check")
    assert review.status_code == 200
    assert Grant.objects.count() == 0
    assert "What you are signing, in plain words" in html
    assert 'src="/static/portal/keys.js"' in html
    assert typed["message"]["patient"] == signing.patient_address(private_key=key)  # type: ignore[index]
    commitment = signing.keccak(bytes.fromhex(check["commitment_salt"][2:]) + check["scope"].encode())  # type: ignore[index]
    assert "0x" + commitment.hex() == typed["message"]["terms"]["scopeCommitment"]  # type: ignore[index]

    done = alice.post("/sharing/new/review/", {"signature": _sign(typed, key)})

    grant = Grant.objects.get()
    assert done.status_code == 302
    assert grant.signature == _sign(typed, key)
    assert grant.status == GrantStatus.PENDING


def test_a_wrong_browser_signature_is_refused_and_nothing_is_queued(alice, alice_record, clinician, deployed):
    _take_key(alice)
    typed = _page_json(_review(alice, clinician).content.decode(), "typed-data")

    answer = alice.post("/sharing/new/review/", {"signature": _sign(typed, secrets.token_bytes(32))})

    assert answer.status_code == 400
    assert "this signature was not made by your registered key" in answer.content.decode()
    assert Grant.objects.count() == 0
    assert OutboxMessage.objects.filter(kind="grant").count() == 0


def test_a_revocation_with_her_own_key_is_signed_on_the_confirmation_page(alice, alice_record, clinician, deployed):
    key = _take_key(alice)
    typed = _page_json(_review(alice, clinician).content.decode(), "typed-data")
    alice.post("/sharing/new/review/", {"signature": _sign(typed, key)})
    grant = Grant.objects.get()

    page = alice.get(f"/sharing/{grant.pk}/revoke/").content.decode()
    revoke = _page_json(page, "typed-data")
    unsigned = alice.post(f"/sharing/{grant.pk}/revoke/")
    signed = alice.post(f"/sharing/{grant.pk}/revoke/", {"signature": _sign(revoke, key)})

    assert unsigned.status_code == 400
    assert signed.status_code == 302
    assert Grant.objects.get().status == GrantStatus.REVOKED


def test_erasing_with_her_own_key_needs_her_browser_to_sign_every_revocation(
    alice, alice_record, clinician, deployed, patient
):
    key = _take_key(alice)
    typed = _page_json(_review(alice, clinician).content.decode(), "typed-data")
    alice.post("/sharing/new/review/", {"signature": _sign(typed, key)})
    grant = Grant.objects.get()
    page = alice.get("/erase/").content.decode()
    items = _page_json(page, "revocations-typed-data")
    confirm = {"confirmation": "erase my record", "password": PASSWORD}

    unsigned = alice.post("/erase/", confirm)
    assert unsigned.status_code == 400
    assert "Nothing was erased" in unsigned.content.decode()
    assert Patient.objects.get(pk=patient.pk).is_erased is False

    signatures = {item["grant_id"]: _sign(item["typed_data"], key) for item in items}  # type: ignore[union-attr]
    erased = alice.post("/erase/", {**confirm, "revocation_signatures": json.dumps(signatures)})

    assert [item["grant_id"] for item in items] == [grant.pk]  # type: ignore[union-attr]
    assert erased.status_code == 200
    assert Patient.objects.get(pk=patient.pk).is_erased is True
    assert Grant.objects.get().status == GrantStatus.REVOKED


def test_seed_demo_leaves_a_demo_patient_who_took_her_key_alone(alice, patient, deployed):
    from portal.management.commands.seed_demo import SeedReport, _sharing_ensure
    from tests.conftest import _user

    _take_key(alice)

    said = _sharing_ensure(
        patient=patient,
        owner=patient.user,
        clinician=_user("dr.x", "clinician"),
        researcher=_user("r.x", "researcher"),
        report=SeedReport(),
    )

    assert said == "sharing demo skipped: the demo patient holds her own key"
    assert Grant.objects.count() == 0


def test_taking_or_first_registering_a_key_asks_for_the_account_password_again(alice, patient, deployed):
    wrong = alice.post("/keys/take/", {"password": "not it"})
    Patient.objects.filter(pk=patient.pk).update(wallet_address="", wallet_ciphertext=None)
    key = secrets.token_bytes(32)
    address = signing.patient_address(private_key=key)
    template = _page_json(alice.get("/keys/").content.decode(), "registration-typed-data")
    template["message"]["key"] = address  # type: ignore[index]
    unproven = alice.post("/keys/register/", {"address": address, "signature": _sign(template, key)})

    assert wrong.status_code == 400
    assert "private_key" not in wrong.json()
    assert unproven.status_code == 400
    assert unproven.json() == {"error": "your account password is needed for this, and that one is not it"}
    assert Patient.objects.get(pk=patient.pk).wallet_address == ""
