"""OAuth2: authorization code with PKCE, client credentials, refresh, revocation, scopes and purpose of use."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from django.test import Client
from oauth2_provider.models import AccessToken, Application, RefreshToken

from api.models import TokenPurpose
from audit.models import AccessLogEntry
from consent.gate import access_log_text
from tests.api.conftest import basic, bearer, register_app
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db

REDIRECT = "https://app.example/callback"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorization_code_tokens(user, scope: str, purpose: str | None = None) -> dict:  # type: ignore[no-untyped-def, type-arg]
    app, secret = register_app(
        user, grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris=REDIRECT, skip_authorization=False
    )
    browser = Client()
    browser.force_login(user)
    verifier, challenge = _pkce()
    asked = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "aud": "http://testserver/fhir",
    }
    page = browser.get("/oauth/authorize/", asked)
    assert page.status_code == 200  # the approval page
    approved = browser.post("/oauth/authorize/", {**asked, "allow": "Authorize"})
    assert approved.status_code == 302, approved.content
    code = parse_qs(urlsplit(approved["Location"]).query)["code"][0]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    if purpose:
        exchange["purpose_of_use"] = purpose
    response = Client().post("/oauth/token/", exchange, HTTP_AUTHORIZATION=basic(app.client_id, secret))
    assert response.status_code == 200, response.content
    return {**response.json(), "client_id": app.client_id, "secret": secret}


def test_authorization_code_with_pkce_gives_a_token_that_reads_for_the_signed_in_clinician(
    api, clinician, issue_grant, an_observation
):
    issue_grant()
    tokens = _authorization_code_tokens(clinician, "openid fhirUser user/Observation.rs offline_access", "TREAT")

    assert tokens["scope"] == "openid fhirUser user/Observation.rs offline_access"
    assert tokens["refresh_token"]
    assert 0 < tokens["expires_in"] <= 3600
    response = api.get(f"/fhir/Observation/{an_observation.fhir_id}", **bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert AccessLogEntry.objects.get(action="records.read").actor == f"user:{clinician.pk}"


def test_a_code_without_its_pkce_verifier_is_refused(clinician):
    app, secret = register_app(clinician, grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris=REDIRECT)
    browser = Client()
    browser.force_login(clinician)
    _, challenge = _pkce()
    asked = {"response_type": "code", "client_id": app.client_id, "redirect_uri": REDIRECT, "scope": "user/*.rs",
             "code_challenge": challenge, "code_challenge_method": "S256", "aud": "http://testserver/fhir"}  # fmt: skip
    code = parse_qs(urlsplit(browser.post("/oauth/authorize/", {**asked, "allow": "Authorize"})["Location"]).query)[
        "code"
    ][0]
    response = Client().post(
        "/oauth/token/",
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": "wrong" * 10},
        HTTP_AUTHORIZATION=basic(app.client_id, secret),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_client_credentials_act_as_the_application_owner(api, clinician, token_for, issue_grant, an_observation):
    issue_grant()
    token = token_for(clinician, scope="system/Observation.rs")

    assert api.get(f"/fhir/Observation/{an_observation.fhir_id}", **bearer(token)).status_code == 200
    assert AccessToken.objects.get().user_id is None  # DOT stores no user; the owner is who acts


def test_a_malformed_scope_is_refused_at_the_token_endpoint(clinician):
    app, secret = register_app(clinician)
    for scope in ("user/Observation.xyz", "patient/Observation.rs?category=x", "admin", "user/NotAType.rs"):
        response = Client().post(
            "/oauth/token/",
            {"grant_type": "client_credentials", "scope": scope},
            HTTP_AUTHORIZATION=basic(app.client_id, secret),
        )
        assert response.status_code == 400, scope
        assert response.json()["error"] == "invalid_scope"


def test_an_unknown_purpose_of_use_is_refused_at_the_token_endpoint(clinician):
    app, secret = register_app(clinician)
    response = Client().post(
        "/oauth/token/",
        {"grant_type": "client_credentials", "scope": "user/*.rs", "purpose_of_use": "CURIOSITY"},
        HTTP_AUTHORIZATION=basic(app.client_id, secret),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_the_purpose_bound_to_a_token_decides_and_another_purpose_in_the_header_is_refused(
    api, clinician, token_for, issue_grant, an_observation
):
    issue_grant(purpose="CAREMGT")
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    bound = token_for(clinician, purpose="CAREMGT")
    unbound = token_for(clinician)

    assert TokenPurpose.objects.get().purpose == "CAREMGT"
    assert api.get(url, **bearer(bound)).status_code == 200
    assert api.get(url, HTTP_X_PURPOSE_OF_USE="TREAT", **bearer(bound)).status_code == 403
    assert api.get(url, **bearer(unbound)).status_code == 404  # default TREAT: no grant for it
    assert api.get(url, HTTP_X_PURPOSE_OF_USE="CAREMGT", **bearer(unbound)).status_code == 200
    unknown = api.get(url, HTTP_X_PURPOSE_OF_USE="NOSY", **bearer(unbound))
    assert unknown.status_code == 400
    assert "X-Purpose-Of-Use" in orjson.loads(unknown.content)["issue"][0]["diagnostics"]


def test_break_glass_needs_a_reason_and_is_flagged(api, other_clinician, an_observation):
    # A person signed in (authorization code): a backend service cannot break glass (tests/api/test_break_glass_api.py).
    token = _authorization_code_tokens(other_clinician, "user/*.rs")["access_token"]
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    glass = {"HTTP_X_PURPOSE_OF_USE": "ETREAT", "HTTP_X_BREAK_GLASS_CODE": "unconscious-patient"}

    without = api.get(url, **glass, **bearer(token))
    with_reason = api.get(url, **glass, HTTP_X_BREAK_GLASS_REASON="unconscious in the emergency room", **bearer(token))

    assert without.status_code == 400
    assert with_reason.status_code == 200
    entry = AccessLogEntry.objects.get(action="records.read", outcome="permit")
    reason = access_log_text(patient_id=entry.patient_ref, text=entry.reason)
    assert (entry.break_glass, reason, entry.purpose) == (True, "unconscious in the emergency room", "ETREAT")


def test_revoking_the_grant_denies_the_next_request_with_the_same_token(
    api, clinician, patient_user, token_for, issue_grant, an_observation
):
    grant = issue_grant()
    token = token_for(clinician)
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    assert api.get(url, **bearer(token)).status_code == 200

    grant_revoke_signed(grant=grant, by=patient_user)

    assert api.get(url, **bearer(token)).status_code == 404


def test_a_revoked_access_token_is_refused_at_once_and_a_revoked_refresh_token_cannot_refresh(
    api, clinician, issue_grant, an_observation
):
    issue_grant()
    tokens = _authorization_code_tokens(clinician, "user/*.rs offline_access", "TREAT")
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    auth = basic(tokens["client_id"], tokens["secret"])

    refreshed = Client().post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        HTTP_AUTHORIZATION=auth,
    )
    assert refreshed.status_code == 200
    fresh = refreshed.json()
    assert api.get(url, **bearer(tokens["access_token"])).status_code == 401  # rotated away
    assert api.get(url, **bearer(fresh["access_token"])).status_code == 200
    assert TokenPurpose.objects.get().purpose == "TREAT"  # the purpose follows the refresh

    revoked = Client().post(
        "/oauth/revoke_token/",
        {"token": fresh["access_token"], "token_type_hint": "access_token"},
        HTTP_AUTHORIZATION=auth,
    )
    assert revoked.status_code == 200
    assert api.get(url, **bearer(fresh["access_token"])).status_code == 401

    Client().post("/oauth/revoke_token/", {"token": fresh["refresh_token"], "token_type_hint": "refresh_token"},
                  HTTP_AUTHORIZATION=auth)  # fmt: skip
    again = Client().post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]},
        HTTP_AUTHORIZATION=auth,
    )
    assert again.status_code == 400
    assert RefreshToken.objects.filter(revoked__isnull=True).count() == 0


def test_an_expired_token_is_401(api, clinician, token_for, issue_grant, an_observation):
    issue_grant()
    token = token_for(clinician)
    AccessToken.objects.update(expires="2000-01-01T00:00:00Z")

    assert api.get(f"/fhir/Observation/{an_observation.fhir_id}", **bearer(token)).status_code == 401


def test_a_deactivated_user_token_is_401(api, clinician, token_for, an_observation):
    token = token_for(clinician)
    clinician.is_active = False
    clinician.save(update_fields=["is_active"])

    assert api.get(f"/fhir/Observation/{an_observation.fhir_id}", **bearer(token)).status_code == 401


def test_tokens_are_stored_as_checksums_only(clinician, token_for):
    token = token_for(clinician)

    stored = AccessToken.objects.get()
    assert stored.token == ""
    assert stored.token_checksum == hashlib.sha256(token.encode()).hexdigest()


@pytest.mark.parametrize("url", ["/oauth/token/", "/oauth/revoke_token/"])
def test_the_oauth_endpoints_answer_oversized_and_malformed_bodies_without_a_server_error(settings, clinician, url):
    app, secret = register_app(clinician)
    auth = basic(app.client_id, secret)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    oversized = Client().post(url, {"grant_type": "client_credentials", "pad": "x" * 4000}, HTTP_AUTHORIZATION=auth)
    garbage = Client().post(
        url, b"\xff\xfe{{{", content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=auth
    )
    as_json = Client().post(url, b'{"grant_type": 1}', content_type="application/json", HTTP_AUTHORIZATION=auth)

    assert oversized.status_code == 413
    assert oversized.json()["error"] == "invalid_request"
    assert (garbage.status_code, as_json.status_code) == (400, 400)
    assert (
        garbage.json()["error"]
        == as_json.json()["error"]
        == ("unsupported_grant_type" if url == "/oauth/token/" else "invalid_request")
    )
