"""`seed_demo` with a deployed contract: the demo dashboard has grants and accesses, once."""

from __future__ import annotations

import stat
from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import AccessLogEntry
from consent.keys import patient_key_custody
from consent.models import Grant, KeyKind, KeyRegistration
from consent.services import grant_typed_data
from ledger import signing
from ledger.device import Device
from portal.management.commands.seed_demo import phrase_path
from records.models import Patient

pytestmark = pytest.mark.django_db


def _seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_the_demo_patient_shares_with_the_demo_clinician_and_the_log_shows_reads_break_glass_and_a_deny(
    deployed,
) -> None:
    output = _seed()

    grants = Grant.objects.order_by("created_at")
    assert [(g.purpose, g.status) for g in grants] == [
        ("TREAT", "recorded"),
        ("CAREMGT", "recorded"),
        ("TREAT", "revoked"),
    ]
    assert {g.grantee.username for g in grants} == {"dr.demo"}
    reads = AccessLogEntry.objects.filter(action="records.read")
    assert reads.filter(outcome="permit", break_glass=False).count() == 3
    assert reads.filter(break_glass=True).count() == 1
    assert reads.filter(outcome="deny").count() == 1
    assert "sharing demo: 3 grants (2 recorded on chain, 1 revoked), 5 accesses logged" in output


def test_the_demo_patient_signs_with_a_key_the_seed_made_as_her_device_and_only_her_phrase_file_keeps(
    deployed,
) -> None:
    output = _seed()

    patient = Patient.objects.get(user__username="demo.patient")
    path = phrase_path()
    phrase = path.read_text().strip()
    device = Device.from_phrase(phrase)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (patient.wallet_address, patient.wallet_ciphertext) == (device.address, None)
    assert patient_key_custody(patient) == "browser"
    assert list(patient.key_registrations.values_list("kind", flat=True)) == [KeyKind.CREATED]
    for grant in Grant.objects.all():
        assert signing.recover_signer(grant_typed_data(grant), signing.signature_parse(grant.signature)) == (
            device.address
        )
    assert f"Her recovery phrase is in {path} (readable by you only)." in output
    assert '"Recover your key on this device"' in output
    assert phrase not in output
    assert phrase.split()[0] + " " + phrase.split()[1] not in output


def test_a_second_seed_adds_no_grant_and_no_access(deployed) -> None:
    _seed()
    before = (Grant.objects.count(), AccessLogEntry.objects.count())

    output = _seed()

    assert (Grant.objects.count(), AccessLogEntry.objects.count()) == before
    assert "sharing demo" not in output
    assert KeyRegistration.objects.count() == 1  # her key was made once


def test_without_a_contract_the_sharing_demo_is_skipped_and_says_why(db) -> None:  # type: ignore[no-untyped-def]
    output = _seed()

    assert not Grant.objects.exists()
    assert "sharing demo skipped: ConsentRegistry is not deployed" in output


def test_the_demo_clinician_is_listed_in_the_directory_by_name_clinic_and_specialty(db) -> None:  # type: ignore[no-untyped-def]
    from django.test import Client

    from accounts.models import User
    from portal.management.commands.seed_demo import demo_seed

    demo_seed(password="healthledger-demo")
    client = Client()
    client.force_login(User.objects.get(username="demo.patient"))

    page = client.get("/sharing/new/?q=general practice").content.decode()

    assert "Dr Dana Demo" in page
    assert "HealthLedger Demo Clinic" in page
