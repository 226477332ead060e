"""Sessions: what a copy of the database holds opens no session."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from tests.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_a_copied_sessions_table_yields_no_cookie_that_opens_a_live_session(patient_user, patient) -> None:
    alice = Client()
    assert alice.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
    cookie = alice.cookies["sessionid"].value
    stolen = list(Session.objects.values_list("session_key", flat=True))

    assert stolen
    assert cookie not in stolen
    for stored_key in stolen:
        thief = Client()
        thief.cookies["sessionid"] = stored_key
        response = thief.get("/dashboard/")
        assert (response.status_code, response["Location"]) == (302, "/login/?next=/dashboard/")
    assert alice.get("/dashboard/").status_code == 200


def test_signing_out_deletes_the_stored_session(patient_user, patient) -> None:
    alice = Client()
    alice.post("/login/", {"username": "alice", "password": PASSWORD})
    (stored_key,) = Session.objects.values_list("session_key", flat=True)

    alice.post("/logout/")

    assert not Session.objects.filter(session_key=stored_key).exists()
    assert alice.get("/dashboard/").status_code == 302


def test_the_stored_key_depends_on_the_account_key(settings) -> None:
    from healthledger.lib.account_secrets import session_id_digest
    from healthledger.lib.keyfiles import clear_key_caches

    first = session_id_digest("abcdefgh12345678")
    settings.HEALTHLEDGER_ACCOUNT_KEY = "A" * 43
    clear_key_caches()

    assert session_id_digest("abcdefgh12345678") != first
    assert len(first) == 40
