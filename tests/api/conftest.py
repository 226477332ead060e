"""Fixtures for the API: real OAuth2 tokens from the token endpoint, and the consent fixtures.

`token_for(user, scope=..., purpose=...)` registers a backend-service application owned by
the user and asks /oauth/token/ for a client-credentials token: the token acts as that user.
`signed_in_token_for(user, ...)` goes through the authorization-code flow with PKCE instead:
the user signs in and approves, as a person at a clinical app does.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from oauth2_provider.models import Application

from tests.consent.conftest import alice_record, an_observation, deployed, issue_grant  # noqa: F401
from tests.ledger.conftest import chain  # noqa: F401

_apps = itertools.count()

TokenFor = Callable[..., str]


def register_app(user, *, grant_type: str = Application.GRANT_CLIENT_CREDENTIALS, **extra: object):  # type: ignore[no-untyped-def]
    """A confidential application owned by `user`; returns (application, its raw client secret)."""
    secret = f"secret-{next(_apps)}-for-tests-only-0123456789"
    app = Application.objects.create(
        name=f"app-{user.username}-{next(_apps)}",
        user=user,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=grant_type,
        client_secret=secret,
        **extra,
    )
    return app, secret


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.fixture
def token_for(db) -> TokenFor:  # type: ignore[no-untyped-def]
    def issue(user, scope: str = "user/*.cruds", purpose: str | None = None) -> str:  # type: ignore[no-untyped-def]
        app, secret = register_app(user)
        data = {"grant_type": "client_credentials", "scope": scope}
        if purpose:
            data["purpose_of_use"] = purpose
        # CSRF enforced as a real HTTP client meets it: the token endpoint must not depend on a session.
        response = Client(enforce_csrf_checks=True).post(
            "/oauth/token/", data, HTTP_AUTHORIZATION=basic(app.client_id, secret)
        )
        assert response.status_code == 200, response.content
        return str(response.json()["access_token"])

    return issue


@pytest.fixture
def api() -> Client:
    return Client()


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


APP_REDIRECT = "https://app.example/callback"


@pytest.fixture
def signed_in_token_for(db) -> TokenFor:  # type: ignore[no-untyped-def]
    def issue(user, scope: str = "user/*.rs", purpose: str | None = None) -> str:  # type: ignore[no-untyped-def]
        app, secret = register_app(
            user, grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris=APP_REDIRECT, skip_authorization=True
        )
        browser = Client()
        browser.force_login(user)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        asked = {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": APP_REDIRECT,
            "scope": scope,
            "state": "xyz",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "aud": "http://testserver/fhir",  # SMART: this server's FHIR base
        }
        approved = browser.get("/oauth/authorize/", asked)
        assert approved.status_code == 302, approved.content
        code = parse_qs(urlsplit(approved["Location"]).query)["code"][0]
        exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT}
        exchange["code_verifier"] = verifier
        if purpose:
            exchange["purpose_of_use"] = purpose
        response = Client().post("/oauth/token/", exchange, HTTP_AUTHORIZATION=basic(app.client_id, secret))
        assert response.status_code == 200, response.content
        return str(response.json()["access_token"])

    return issue
