"""Closing an account ends sign-in and keeps the record; it is refused while sharing lasts."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AccessLogEntry
from records.models import Resource
from tests.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_closing_signs_out_and_keeps_the_record(alice, patient_user, alice_record) -> None:
    kept = Resource.objects.filter(patient=alice_record).count()

    response = alice.post("/account/close/", {"password": PASSWORD, "confirm": "yes"})

    patient_user.refresh_from_db()
    assert (response.status_code, response["Location"]) == (302, "/account/closed/")
    assert patient_user.is_active is False
    assert alice.get("/dashboard/").status_code == 302
    assert not Client().login(username=patient_user.username, password=PASSWORD)
    assert Resource.objects.filter(patient=alice_record).count() == kept
    alice_record.refresh_from_db()
    assert alice_record.is_erased is False
    assert AccessLogEntry.objects.filter(action="accounts.close", patient_ref=alice_record.pk).count() == 1


def test_a_wrong_password_or_no_confirmation_closes_nothing(alice, patient_user, patient) -> None:
    wrong = alice.post("/account/close/", {"password": "nope", "confirm": "yes"})
    unconfirmed = alice.post("/account/close/", {"password": PASSWORD})

    patient_user.refresh_from_db()
    assert (wrong.status_code, unconfirmed.status_code) == (400, 400)
    assert "That is not your password." in wrong.content.decode()
    assert patient_user.is_active is True


def test_closing_is_refused_while_sharing_lasts(alice, patient_user, issue_grant) -> None:
    issue_grant()

    response = alice.post("/account/close/", {"password": PASSWORD, "confirm": "yes"})

    patient_user.refresh_from_db()
    assert response.status_code == 400
    assert "revoke every access on the Sharing page first" in response.content.decode()
    assert patient_user.is_active is True


def test_a_clinician_cannot_close_through_the_patients_page(mallory, other_clinician) -> None:
    response = mallory.post("/account/close/", {"password": PASSWORD, "confirm": "yes"})

    other_clinician.refresh_from_db()
    assert response.status_code == 403
    assert other_clinician.is_active is True
