"""Password reset by e-mail, password change, and the terms and privacy page."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from tests.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new passphrase 42"


def test_a_reset_link_by_e_mail_sets_a_new_password(patient_user, settings) -> None:
    settings.HEALTHLEDGER_PUBLIC_URL = "https://ledger.example.org"
    patient_user.email = "alice@example.org"
    patient_user.save()
    client = Client()

    sent = client.post("/account/password/reset/", {"email": "alice@example.org"}, HTTP_HOST="evil.example")

    assert sent.status_code == 400  # a Host outside ALLOWED_HOSTS is refused before any e-mail is built
    client = Client()
    sent = client.post("/account/password/reset/", {"email": "alice@example.org"})
    assert sent.status_code == 302
    (message,) = mail.outbox
    link = re.search(r"https?://\S+/account/password/reset/\S+/", message.body)
    assert link is not None
    assert "evil.example" not in message.body
    path = link.group(0).split("://", 1)[1].split("/", 1)[1]
    form = client.get(f"/{path}", follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert Client().login(username=patient_user.username, password=NEW_PASSWORD)


def test_an_unknown_address_gets_the_same_answer_and_no_e_mail(db) -> None:
    response = Client().post("/account/password/reset/", {"email": "nobody@example.org"})

    assert response.status_code == 302
    assert response["Location"] == "/account/password/reset/sent/"
    assert mail.outbox == []


def test_a_signed_in_patient_changes_her_password(alice, patient_user) -> None:
    response = alice.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert Client().login(username=patient_user.username, password=NEW_PASSWORD)


def test_a_wrong_old_password_changes_nothing(alice, patient_user) -> None:
    response = alice.post(
        "/account/password/",
        {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 200
    assert Client().login(username=patient_user.username, password=PASSWORD)


def test_the_privacy_page_says_what_is_on_the_chain(db) -> None:
    body = Client().get("/privacy/").content.decode()

    assert "No health information, no name and no e-mail address is ever written there." in body
