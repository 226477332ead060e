"""Erasing one's data: a strong confirmation, grants revoked, the key destroyed, and a page that says what remains."""

from __future__ import annotations

import pytest

from consent.models import Grant
from records.models import Patient, Resource
from tests.portal.conftest import PASSWORD

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

    response = alice.post("/erase/", {"confirmation": "Erase my record", "password": PASSWORD})

    assert (response.status_code, response["Location"]) == (302, "/erase/done/")
    patient = Patient.objects.get(pk=grant.patient_id)
    assert patient.wrapped_key is None
    assert patient.erased_at is not None
    assert Grant.objects.get(pk=grant.pk).status == "revoked"
    page = alice.get("/erase/done/").content.decode()
    assert f"every one of your {resources} resources" in page
    assert "only salted commitments to the scope of your 1 grant" in page


def test_after_erasure_the_record_pages_say_it_was_erased_instead_of_failing(alice, alice_record) -> None:
    alice.post("/erase/", {"confirmation": "erase my record", "password": PASSWORD})

    export = alice.get("/record/export/")
    record = alice.get("/record/")

    assert export.status_code == 410
    assert "This record was erased" in export.content.decode()
    assert record.status_code == 200
    assert "Your record was erased" in record.content.decode()
    assert alice.get("/erase/").status_code == 302
