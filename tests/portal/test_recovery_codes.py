"""TOTP recovery codes: shown once, stored as digests, each signs in once instead of the app's code."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from portal.models import RecoveryCode
from tests.portal.conftest import PASSWORD
from tests.portal.test_auth import _code, _enrolled

pytestmark = pytest.mark.django_db


def _verified_client(user, device) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert client.post("/login/verify/", {"token": _code(device)}).status_code == 302
    return client


def _codes(client: Client) -> list[str]:
    body = client.post("/account/security/", {"action": "recovery-codes"}).content.decode()
    return re.findall(r"<li><code>([A-Z0-9]{5}-[A-Z0-9]{5})</code></li>", body)


def test_codes_are_shown_once_and_only_their_digests_are_kept(patient_user, patient) -> None:
    client = _verified_client(patient_user, _enrolled(patient_user))

    codes = _codes(client)
    later = client.get("/account/security/").content.decode()

    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert not any(code in later for code in codes)
    assert "You have 10 unused." in later
    stored = list(RecoveryCode.objects.filter(user=patient_user).values_list("digest", flat=True))
    assert len(stored) == 10
    assert not any(code.replace("-", "") in digest.upper() for code in codes for digest in stored)


def test_a_recovery_code_signs_in_once(patient_user, patient) -> None:
    device = _enrolled(patient_user)
    codes = _codes(_verified_client(patient_user, device))
    client = Client()
    client.post("/login/", {"username": patient_user.username, "password": PASSWORD})

    first = client.post("/login/verify/", {"recovery_code": codes[0].lower()})

    assert first.status_code == 302
    assert client.get("/dashboard/").status_code == 200
    again = Client()
    again.post("/login/", {"username": patient_user.username, "password": PASSWORD})
    assert again.post("/login/verify/", {"recovery_code": codes[0]}).status_code == 401


def test_a_new_set_replaces_the_old_one(patient_user, patient) -> None:
    device = _enrolled(patient_user)
    client = _verified_client(patient_user, device)
    old = _codes(client)
    _codes(client)
    fresh = Client()
    fresh.post("/login/", {"username": patient_user.username, "password": PASSWORD})

    assert fresh.post("/login/verify/", {"recovery_code": old[1]}).status_code == 401


def test_another_accounts_code_does_not_sign_in(patient_user, patient, other_patient) -> None:
    alice_codes = _codes(_verified_client(patient_user, _enrolled(patient_user)))
    _enrolled(other_patient.user)
    bob = Client()
    bob.post("/login/", {"username": other_patient.user.username, "password": PASSWORD})

    assert bob.post("/login/verify/", {"recovery_code": alice_codes[0]}).status_code == 401


def test_turning_the_second_factor_off_removes_the_codes(patient_user, patient) -> None:
    client = _verified_client(patient_user, _enrolled(patient_user))
    _codes(client)

    client.post("/account/security/", {"action": "remove", "password": PASSWORD})

    assert not RecoveryCode.objects.filter(user=patient_user).exists()


def test_without_a_second_factor_no_codes_are_made(alice, patient_user) -> None:
    body = alice.post("/account/security/", {"action": "recovery-codes"}).content.decode()

    assert "Your new recovery codes" not in body
    assert not RecoveryCode.objects.exists()
