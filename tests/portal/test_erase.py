"""Erasing one's data: a strong confirmation, grants revoked, the key destroyed, and a page that says what remains."""

from __future__ import annotations

import pytest

from consent.models import Grant
from records.models import Patient, Resource
from tests.portal.conftest import PASSWORD, erase_signed

pytestmark = pytest.mark.django_db


def test_a_wrong_confirmation_or_password_erases_nothing(alice, alice_record) -> None:
    wrong_phrase = alice.post("/erase/", {"confirmation": "yes", "password": PASSWORD})
    wrong_password = alice.post("/erase/", {"confirmation": "erase my record", "password": "nope"})

    assert wrong_phrase.status_code == wrong_password.status_code == 400
    assert "Type exactly: erase my record" in wrong_phrase.content.decode()
    assert Patient.objects.get(pk=alice_record.pk).erased_at is None


def test_erasing_revokes_every_grant_destroys_the_key_and_says_what_remains(alice, issue_grant) -> None:
    grant = issue_grant()
    resources = Resource.objects.filter(patient=grant.patient).count()

    response = erase_signed(alice, grant.patient, {"confirmation": "Erase my record", "password": PASSWORD})

    assert response.status_code == 200
    patient = Patient.objects.get(pk=grant.patient_id)
    assert patient.wrapped_key is None
    assert patient.erased_at is not None
    assert Grant.objects.get(pk=grant.pk).status == "revoked"
    page = response.content.decode()
    assert f"every one of your {resources} resources" in page
    assert "only salted commitments to the scope of your 1 grant" in page
    assert "whose own backups expire within 30 days" in page


def test_after_erasure_the_account_is_closed_nameless_and_signed_out(alice, alice_record) -> None:
    from django.test import Client

    user = alice_record.user
    username = user.username
    alice.post("/erase/", {"confirmation": "erase my record", "password": PASSWORD})

    user.refresh_from_db()
    assert (user.is_active, user.first_name, user.last_name, user.email) == (False, "", "", "")
    assert user.username == f"erased-{user.pk}"
    assert not user.has_usable_password()
    assert alice.get("/record/").status_code == 302  # signed out
    again = Client().post("/login/", {"username": username, "password": PASSWORD})
    assert again.status_code != 302 or "/login" in again.get("Location", "")
