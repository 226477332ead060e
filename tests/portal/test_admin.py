"""The Django admin: a second factor for staff, throttled sign-in, no TOTP seed shown, changes to a patient logged."""

from __future__ import annotations

import pytest
from django.test import Client
from django_otp.oath import totp

from accounts.models import User
from accounts.services import user_create
from audit.models import AccessLogEntry
from portal.models import SealedTOTPDevice
from portal.services import totp_device_begin
from tests.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _code(device: SealedTOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


@pytest.fixture
def admin_user(db) -> User:  # type: ignore[no-untyped-def]
    user = user_create(username="root_rosa", password=PASSWORD, role="steward", is_staff=True, is_superuser=True)
    device = totp_device_begin(user=user)
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return user


def _device(user: User) -> SealedTOTPDevice:
    return SealedTOTPDevice.objects.get(user=user, confirmed=True)


@pytest.fixture
def admin_client(admin_user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    response = client.post(
        "/admin/login/",
        {"username": "root_rosa", "password": PASSWORD, "otp_token": _code(_device(admin_user)), "next": "/admin/"},
    )
    assert (response.status_code, response["Location"]) == (302, "/admin/")
    return client


def test_the_password_and_a_code_open_the_admin(admin_client) -> None:
    assert admin_client.get("/admin/").status_code == 200


def test_the_password_alone_does_not_open_the_admin(admin_user) -> None:
    client = Client()

    without = client.post("/admin/login/", {"username": "root_rosa", "password": PASSWORD})
    wrong = client.post("/admin/login/", {"username": "root_rosa", "password": PASSWORD, "otp_token": "000000"})

    assert without.status_code == 200
    assert "Enter the username, password and authenticator code of a staff account." in wrong.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/")["Location"] == "/admin/login/?next=/admin/"


def test_a_staff_session_signed_in_without_the_code_is_sent_to_the_admin_sign_in(admin_user) -> None:
    client = Client()
    client.force_login(admin_user)  # the portal's password sign-in, or a stolen session, has no verified device

    response = client.get("/admin/")

    assert (response.status_code, response["Location"]) == (302, "/admin/login/?next=/admin/")


def test_a_staff_member_without_an_authenticator_cannot_sign_in_to_the_admin(db) -> None:  # type: ignore[no-untyped-def]
    user_create(username="new_nia", password=PASSWORD, role="steward", is_staff=True, is_superuser=True)
    client = Client()

    response = client.post("/admin/login/", {"username": "new_nia", "password": PASSWORD, "otp_token": "123456"})

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_the_sixth_admin_sign_in_within_the_window_is_refused_even_when_right(admin_user) -> None:
    client = Client()
    for _ in range(5):
        response = client.post("/admin/login/", {"username": "root_rosa", "password": "guess", "otp_token": "000000"})
        assert response.status_code == 200

    response = client.post(
        "/admin/login/", {"username": "root_rosa", "password": PASSWORD, "otp_token": _code(_device(admin_user))}
    )

    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_failed_admin_and_portal_sign_ins_count_together(admin_user) -> None:
    client = Client()
    for _ in range(5):
        client.post("/login/", {"username": "root_rosa", "password": "guess"})

    response = client.post(
        "/admin/login/", {"username": "root_rosa", "password": PASSWORD, "otp_token": _code(_device(admin_user))}
    )

    assert response.status_code == 429


def test_the_admin_never_shows_a_totp_seed(admin_client, patient_user) -> None:
    device = totp_device_begin(user=patient_user)
    seed = device.bin_key
    import base64

    secret_forms = (seed.hex(), base64.b32encode(seed).decode(), device.key, "otpauth://")
    pages = [
        admin_client.get("/admin/portal/sealedtotpdevice/"),
        admin_client.get(f"/admin/portal/sealedtotpdevice/{device.pk}/change/"),
    ]

    assert [page.status_code for page in pages] == [200, 200]
    for page in pages:
        assert not any(secret in page.content.decode() for secret in secret_forms)
    assert admin_client.get("/admin/otp_totp/totpdevice/").status_code == 404
    assert admin_client.get(f"/admin/otp_totp/totpdevice/{device.pk}/config/").status_code == 404
    assert admin_client.get(f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/").status_code == 404


def test_an_admin_setting_a_patients_password_is_in_her_access_log_as_the_admins(
    admin_client, admin_user, patient_user, patient, alice
) -> None:
    response = admin_client.post(
        f"/admin/accounts/user/{patient_user.pk}/password/",
        {
            "password1": "an admin's new passphrase 1",
            "password2": "an admin's new passphrase 1",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302
    entry = AccessLogEntry.objects.get(action="accounts.admin.password")
    assert (entry.actor, entry.patient_ref, entry.outcome) == (f"user:{admin_user.pk}", patient.pk, "permit")
    alice.login(username="alice", password="an admin's new passphrase 1")
    page = alice.get("/access/").content.decode()
    assert "An administrator set a new password on your account" in page
    assert "root_rosa (Data steward)" in page


def test_an_admin_editing_a_patients_account_is_in_her_access_log(
    admin_client, admin_user, patient_user, patient
) -> None:
    form = {
        "username": "alice",
        "first_name": "Alice",
        "last_name": "Changed",
        "email": "alice@example.org",
        "is_active": "on",
        "role": "patient",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }

    response = admin_client.post(f"/admin/accounts/user/{patient_user.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    entry = AccessLogEntry.objects.get(action="accounts.admin.change")
    assert (entry.actor, entry.patient_ref) == (f"user:{admin_user.pk}", patient.pk)


def test_an_admin_removing_a_patients_authenticator_is_in_her_access_log(
    admin_client, admin_user, patient_user, patient
) -> None:
    device = totp_device_begin(user=patient_user)

    response = admin_client.post(f"/admin/portal/sealedtotpdevice/{device.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not SealedTOTPDevice.objects.filter(pk=device.pk).exists()
    entry = AccessLogEntry.objects.get(action="accounts.admin.second_factor.remove")
    assert (entry.actor, entry.patient_ref) == (f"user:{admin_user.pk}", patient.pk)
