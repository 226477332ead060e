"""Sign up, sign in with rate limiting and the optional TOTP second factor, sessions that time out."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.http import HttpResponse
from django.test import Client
from django.utils.http import urlsafe_base64_encode
from django_otp.oath import totp

from accounts.models import User
from portal.models import SealedTOTPDevice as TOTPDevice
from portal.services import totp_device_begin
from records.models import Patient
from tests.portal.conftest import PASSWORD, signed_in

pytestmark = pytest.mark.django_db


def _code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def _enrolled(user: User) -> TOTPDevice:
    device = totp_device_begin(user=user)
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return device


@pytest.fixture
def signup(django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    """POST the sign-up form; the e-mail goes out on commit, as in production."""

    def post(client: Client, username: str, email: str = "dora@example.org") -> HttpResponse:
        form = {"username": username, "first_name": "Dora", "last_name": "Ng", "email": email}
        form |= {"password1": "a sturdy passphrase 7", "password2": "a sturdy passphrase 7"}
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/signup/", form)

    return post


def test_signing_up_makes_an_inactive_patient_and_the_emailed_link_activates_it(signup) -> None:  # type: ignore[no-untyped-def]
    client = Client()

    response = signup(client, "dora")

    assert (response.status_code, response["Location"]) == (302, "/signup/sent/")
    user = User.objects.get(username="dora")
    assert (user.role, user.get_full_name(), user.is_active) == ("patient", "Dora Ng", False)
    assert Patient.objects.get(user=user).wrapped_key is not None
    assert not client.login(username="dora", password="a sturdy passphrase 7")
    (message,) = mail.outbox
    assert message.to == ["dora@example.org"]
    link = re.search(r"http://testserver(/signup/confirm/\S+/)", message.body)
    assert link is not None
    assert client.get(link.group(1)).status_code == 200
    assert client.post("/login/", {"username": "dora", "password": "a sturdy passphrase 7"}).status_code == 302
    assert client.get("/dashboard/").status_code == 200
    client.post("/logout/")
    assert client.get(link.group(1)).status_code == 400  # used: it activates once, never again


def test_sign_up_answers_the_same_for_a_taken_and_a_free_username(signup, patient_user) -> None:  # type: ignore[no-untyped-def]
    taken = signup(Client(), "Alice", email="someone@example.org")
    free = signup(Client(), "alicia", email="someone@example.org")

    assert (taken.status_code, taken["Location"]) == (free.status_code, free["Location"]) == (302, "/signup/sent/")
    assert taken.content == free.content
    assert User.objects.filter(username__iexact="alice").count() == 1
    assert User.objects.get(username="alice").email == ""  # the taken account is untouched
    told, created = mail.outbox
    assert "already taken" in told.body
    assert "/signup/confirm/" not in told.body
    assert "/signup/confirm/" in created.body


def test_a_forged_or_foreign_activation_link_activates_nothing(signup, patient_user) -> None:  # type: ignore[no-untyped-def]
    signup(Client(), "dora")
    dora = User.objects.get(username="dora")
    link = re.search(r"/signup/confirm/(\S+)/(\S+)/", mail.outbox[0].body)
    assert link is not None
    patient_user.is_active = False
    patient_user.save(update_fields=["is_active"])
    alices_uid = urlsafe_base64_encode(str(patient_user.pk).encode())

    assert Client().get(f"/signup/confirm/{link.group(1)}/not-the-token/").status_code == 400
    assert Client().get(f"/signup/confirm/{alices_uid}/{link.group(2)}/").status_code == 400
    assert Client().get("/signup/confirm/%%%/x/").status_code in (400, 404)
    dora.refresh_from_db()
    patient_user.refresh_from_db()
    assert (dora.is_active, patient_user.is_active) == (False, False)


def test_a_weak_password_is_refused_and_no_account_is_made(db) -> None:  # type: ignore[no-untyped-def]
    response = Client().post("/signup/", {"username": "eve", "password1": "password", "password2": "password"})

    assert response.status_code == 400
    assert "This password is too common." in response.content.decode()
    assert not User.objects.filter(username="eve").exists()


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(patient_user) -> None:
    response = Client().post("/login/", {"username": "alice", "password": "not it"})

    assert response.status_code == 401
    assert "That username and password do not match" in response.content.decode()


def test_the_sixth_attempt_within_the_window_is_refused_even_with_the_right_password(patient_user) -> None:
    client = Client()
    for _ in range(5):
        assert client.post("/login/", {"username": "alice", "password": "guess"}).status_code == 401

    response = client.post("/login/", {"username": "alice", "password": PASSWORD})

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_failures_from_another_address_do_not_lock_alice_out(patient_user) -> None:
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(6):
        attacker.post("/login/", {"username": "alice", "password": "guess"})

    response = Client(REMOTE_ADDR="198.51.100.4").post("/login/", {"username": "alice", "password": PASSWORD})

    assert (response.status_code, response["Location"]) == (302, "/")


def test_the_session_ends_with_the_browser_and_after_the_idle_timeout(patient_user, settings) -> None:
    response = Client().post("/login/", {"username": "alice", "password": PASSWORD})

    cookie = response.cookies["sessionid"]
    assert cookie["expires"] == ""  # a browser-session cookie
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert settings.SESSION_COOKIE_AGE == 1800
    assert settings.SESSION_SAVE_EVERY_REQUEST is True


def test_signing_out_needs_a_post(alice) -> None:
    assert alice.get("/logout/").status_code == 405

    response = alice.post("/logout/")

    assert (response.status_code, response["Location"]) == (302, "/login/")
    assert alice.get("/dashboard/").status_code == 302


def test_turning_on_the_second_factor_shows_a_qr_code_and_needs_a_code_to_confirm(alice, patient_user) -> None:
    page = alice.get("/account/security/?setup=1").content.decode()
    device = TOTPDevice.objects.get(user=patient_user)

    assert "<svg" in page
    assert "otpauth" not in page.split("<svg", 1)[0]
    assert alice.post("/account/security/", {"action": "confirm", "token": "000000"}).status_code == 400
    device.refresh_from_db()
    device.throttle_reset()  # django-otp makes the next try after a wrong code wait a second
    response = alice.post("/account/security/", {"action": "confirm", "token": _code(device)})

    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed is True


def test_with_a_second_factor_the_password_alone_does_not_sign_in(patient_user, patient) -> None:
    device = _enrolled(patient_user)
    client = Client()

    response = client.post("/login/", {"username": "alice", "password": PASSWORD})

    assert response["Location"] == "/login/verify/"
    assert client.get("/dashboard/").status_code == 302
    assert client.post("/login/verify/", {"token": "000000"}).status_code == 401
    device.refresh_from_db()
    device.throttle_reset()
    response = client.post("/login/verify/", {"token": _code(device)})
    assert (response.status_code, response["Location"]) == (302, "/")
    assert client.get("/dashboard/").status_code == 200


def test_a_session_signed_in_without_the_code_is_sent_back_to_sign_in(patient_user, patient) -> None:
    _enrolled(patient_user)
    client = signed_in(patient_user)  # bypasses the portal's sign-in, as a stolen session cookie would

    response = client.get("/record/")

    assert (response.status_code, response["Location"]) == (302, "/login/")


def test_turning_the_second_factor_off_needs_the_password(alice, patient_user) -> None:
    alice.get("/account/security/?setup=1")
    device = TOTPDevice.objects.get(user=patient_user)
    alice.post("/account/security/", {"action": "confirm", "token": _code(device)})

    assert alice.post("/account/security/", {"action": "remove", "password": "wrong"}).status_code == 400
    assert TOTPDevice.objects.filter(user=patient_user).exists()
    alice.post("/account/security/", {"action": "remove", "password": PASSWORD})
    assert not TOTPDevice.objects.filter(user=patient_user).exists()
