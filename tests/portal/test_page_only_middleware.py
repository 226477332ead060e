"""Sessions, CSRF, the session user and the page policy run for pages, and step aside for the FHIR API.

The API's only credential is its bearer token: a signed-in browser session must give it nothing,
and an API request must neither read nor write a session. Pages keep every protection.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client

from healthledger.lib.account_secrets import session_id_digest

pytestmark = pytest.mark.django_db


def test_a_signed_in_session_is_no_credential_for_the_fhir_api(alice, alice_record, an_observation) -> None:
    response = alice.get(f"/fhir/Observation/{an_observation.fhir_id}")

    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/fhir+json")
    assert b"OperationOutcome" in response.content


def test_an_api_response_sets_no_cookie_and_leaves_the_session_untouched(alice, alice_record) -> None:
    session_key = alice.cookies[settings.SESSION_COOKIE_NAME].value
    stored_key = session_id_digest(session_key)  # sessions are stored under a keyed hash of their id
    expiry = Session.objects.get(session_key=stored_key).expire_date

    response = alice.get("/fhir/metadata")

    assert response.status_code == 200
    assert not response.cookies
    # Pages save the session on every request (the idle timeout); the API never does.
    assert Session.objects.get(session_key=stored_key).expire_date == expiry
    assert "Cookie" not in response.get("Vary", "")


def test_api_responses_carry_a_policy_that_renders_nothing(db) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/fhir/metadata")

    assert response["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_pages_keep_their_session_renewal_and_page_policy(alice, alice_record) -> None:
    session_key = alice.cookies[settings.SESSION_COOKIE_NAME].value

    response = alice.get("/dashboard/")

    assert response.status_code == 200
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response.cookies[settings.SESSION_COOKIE_NAME].value == session_key


def test_a_page_post_without_its_csrf_token_is_refused(patient_user) -> None:  # type: ignore[no-untyped-def]
    client = Client(enforce_csrf_checks=True)
    client.force_login(patient_user)

    response = client.post("/sharing/", {"grantee": "dr_carol"})

    assert response.status_code == 403
