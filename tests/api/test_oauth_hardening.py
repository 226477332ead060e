"""OAuth hardening: own-token introspection, PKCE S256 only, SMART `aud`, a throttled token endpoint, no oracle."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher, get_hasher
from django.test import Client
from oauth2_provider.models import Application

from tests.api.conftest import basic, register_app

pytestmark = pytest.mark.django_db

REDIRECT = "https://app.example/callback"
FHIR_BASE = "http://testserver/fhir"


def _client_credentials_token(app: Application, secret: str, scope: str = "user/*.rs") -> str:
    response = Client().post(
        "/oauth/token/",
        {"grant_type": "client_credentials", "scope": scope},
        HTTP_AUTHORIZATION=basic(app.client_id, secret),
    )
    assert response.status_code == 200, response.content
    return str(response.json()["access_token"])


# --- introspection ---------------------------------------------------------------------------


def test_a_client_cannot_introspect_another_clients_token(clinician, other_clinician) -> None:
    carols_app, carols_secret = register_app(clinician)
    mallorys_app, mallorys_secret = register_app(other_clinician)
    carols_token = _client_credentials_token(carols_app, carols_secret)

    by_mallory = Client().post(
        "/oauth/introspect/", {"token": carols_token}, HTTP_AUTHORIZATION=basic(mallorys_app.client_id, mallorys_secret)
    )
    by_carol = Client().post(
        "/oauth/introspect/", {"token": carols_token}, HTTP_AUTHORIZATION=basic(carols_app.client_id, carols_secret)
    )

    assert (by_mallory.status_code, by_mallory.json()) == (200, {"active": False})
    assert by_carol.json()["active"] is True
    assert by_carol.json()["client_id"] == carols_app.client_id


# --- PKCE and aud ----------------------------------------------------------------------------


def _authorize(user, **overrides: str):  # type: ignore[no-untyped-def]
    app, _ = register_app(
        user, grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris=REDIRECT, skip_authorization=True
    )
    verifier = secrets.token_urlsafe(48)
    asked = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "scope": "user/*.rs",
        "state": "xyz",
        "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "aud": FHIR_BASE,
        **overrides,
    }
    browser = Client()
    browser.force_login(user)
    return browser.get("/oauth/authorize/", {k: v for k, v in asked.items() if v != "-"})


def test_an_authorization_request_for_this_fhir_base_gets_a_code(clinician) -> None:
    response = _authorize(clinician)

    assert response.status_code == 302
    assert "code" in parse_qs(urlsplit(response["Location"]).query)


def test_pkce_plain_is_refused(clinician) -> None:
    response = _authorize(clinician, code_challenge="a-plain-challenge-" * 3, code_challenge_method="plain")

    assert response.status_code == 302
    assert parse_qs(urlsplit(response["Location"]).query)["error"] == ["invalid_request"]


@pytest.mark.parametrize("aud", ["https://evil.example/fhir", "http://testserver/", "http://testserver/fhirx", "-"])
def test_an_authorization_request_for_another_audience_or_none_is_refused(clinician, aud: str) -> None:
    response = _authorize(clinician, aud=aud)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "aud" in response.json()["error_description"]


# --- the token endpoint --------------------------------------------------------------------------


def test_the_token_endpoint_refuses_an_address_after_too_many_failures(clinician, settings) -> None:
    settings.OAUTH_TOKEN_FAILURE_LIMIT = 3
    app, secret = register_app(clinician)
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for guess in ("a", "b", "c"):
        response = attacker.post(
            "/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic(app.client_id, guess)
        )
        assert response.status_code == 401

    refused = attacker.post(
        "/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic(app.client_id, secret)
    )
    elsewhere = Client(REMOTE_ADDR="198.51.100.4").post(
        "/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic(app.client_id, secret)
    )

    assert refused.status_code == 429
    assert refused["Retry-After"] == str(settings.LOGIN_FAILURE_WINDOW_SECONDS)
    assert elsewhere.status_code == 200


class CountingHasher(MD5PasswordHasher):
    """MD5 (fast, as in every test) that counts its checks: the cost of a client-secret check is one."""

    checks = 0

    def verify(self, password: str, encoded: str) -> bool:
        type(self).checks += 1
        return super().verify(password, encoded)


def test_a_wrong_secret_costs_the_same_for_a_known_and_an_unknown_client_id(clinician, settings) -> None:
    settings.PASSWORD_HASHERS = ["tests.api.test_oauth_hardening.CountingHasher"]
    app, _ = register_app(clinician)
    answers, costs = [], []
    for client_id in (app.client_id, "no-such-client-id-0123456789"):
        for how in ("basic", "body"):
            counter = type(get_hasher())  # the class Django loaded from PASSWORD_HASHERS
            counter.checks = 0
            data = {"grant_type": "client_credentials"}
            extra = {}
            if how == "basic":
                extra["HTTP_AUTHORIZATION"] = basic(client_id, "a wrong secret")
            else:
                data.update(client_id=client_id, client_secret="a wrong secret")
            response = Client().post("/oauth/token/", data, **extra)
            answers.append((response.status_code, response.content))
            costs.append(counter.checks)

    assert costs == [1, 1, 1, 1]
    assert answers[0] == answers[2]  # basic: known and unknown client ids answer alike
    assert answers[1] == answers[3]  # in the body: alike too
    assert answers[0][0] == 401
