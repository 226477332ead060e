"""App registration without an operator (the clinician's apps page, RFC 7591) and CORS for registered origins."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import Application

from api.smart_models import ClientProfile, InitialAccessToken
from tests.api.conftest import basic, bearer

pytestmark = pytest.mark.django_db

ORIGIN = "https://app.example"
REDIRECT = "https://app.example/callback"


def _page(user) -> Client:  # type: ignore[no-untyped-def]
    browser = Client()
    browser.force_login(user)
    return browser


def _initial_access_token(user) -> str:  # type: ignore[no-untyped-def]
    response = _page(user).post("/clinician/apps/", {"action": "initial-access-token"})
    assert response.status_code == 200
    return str(response.context["initial_access_token"])


def _dcr(token: str | None, metadata: object) -> object:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return Client().post("/oauth/register", json.dumps(metadata), content_type="application/json", **headers)


def test_a_clinician_registers_a_public_browser_app_on_the_apps_page(clinician, other_clinician):
    response = _page(clinician).post(
        "/clinician/apps/",
        {
            "action": "register",
            "client_name": "Growth charts",
            "client_kind": "public",
            "redirect_uris": REDIRECT,
            "allowed_origins": ORIGIN,
            "scope": "launch/patient openid fhirUser patient/Observation.rs",
        },
    )

    assert response.status_code == 200, response.content
    registered = response.context["registered"]
    assert "client_secret" not in registered
    app = Application.objects.get(client_id=registered["client_id"])
    assert app.user == clinician
    assert app.client_type == Application.CLIENT_PUBLIC
    assert app.authorization_grant_type == Application.GRANT_AUTHORIZATION_CODE
    assert app.allowed_origins == ORIGIN
    assert ClientProfile.objects.get(application=app).scope == "launch/patient openid fhirUser patient/Observation.rs"
    assert b"Growth charts" in _page(clinician).get("/clinician/apps/").content
    assert b"Growth charts" not in _page(other_clinician).get("/clinician/apps/").content  # her apps are hers


def test_a_confidential_backend_registered_on_the_page_gets_a_secret_that_works_once_shown(
    api, clinician, issue_grant, an_observation
):
    issue_grant()
    response = _page(clinician).post(
        "/clinician/apps/",
        {"action": "register", "client_name": "Nightly sync", "client_kind": "confidential", "scope": "system/*.rs"},
    )
    registered = response.context["registered"]
    secret = registered["client_secret"]

    token = Client().post(
        "/oauth/token/",
        {"grant_type": "client_credentials", "scope": "system/Observation.rs"},
        HTTP_AUTHORIZATION=basic(registered["client_id"], secret),
    )

    assert token.status_code == 200, token.content
    assert (
        api.get(f"/fhir/Observation/{an_observation.fhir_id}", **bearer(token.json()["access_token"])).status_code
        == 200
    )
    assert secret.encode() not in _page(clinician).get("/clinician/apps/").content  # shown once only
    assert Application.objects.get(client_id=registered["client_id"]).client_secret != secret  # stored hashed


@pytest.mark.parametrize(
    "fields",
    [
        {"client_name": "", "client_kind": "public", "redirect_uris": REDIRECT},
        {"client_name": "x", "client_kind": "public", "redirect_uris": ""},  # a public client needs a redirect
        {"client_name": "x", "client_kind": "public", "redirect_uris": "https://app.example/cb#frag"},
        {"client_name": "x", "client_kind": "public", "redirect_uris": "javascript:alert(1)"},
        {"client_name": "x", "client_kind": "public", "redirect_uris": REDIRECT, "allowed_origins": "https://a/x"},
        {"client_name": "x", "client_kind": "public", "redirect_uris": REDIRECT, "scope": "admin"},
        {"client_name": "x", "client_kind": "jwt", "jwks": "{not json"},
        {"client_name": "x", "client_kind": "jwt"},  # no keys at all
        {"client_name": "x", "client_kind": "jwt", "jwks": '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'},
        {"client_name": "x", "client_kind": "root"},
    ],
)
def test_bad_registrations_are_refused_with_a_reason(clinician, fields):  # type: ignore[no-untyped-def]
    response = _page(clinician).post("/clinician/apps/", {"action": "register", **fields})

    assert response.status_code == 400
    assert response.context["error"]
    assert not Application.objects.exists()


def test_the_apps_page_is_for_clinicians(patient_user):
    assert _page(patient_user).get("/clinician/apps/").status_code == 403
    assert _page(patient_user).post("/clinician/apps/", {"action": "initial-access-token"}).status_code == 403
    assert not InitialAccessToken.objects.exists()
    anonymous = Client().get("/clinician/apps/")
    assert anonymous.status_code == 302
    assert "/clinician/apps/" in anonymous["Location"]


def test_a_clinician_deletes_only_her_own_app(clinician, other_clinician):
    mine = _page(clinician).post(
        "/clinician/apps/", {"action": "register", "client_name": "Mine", "client_kind": "confidential"}
    )
    client_id = mine.context["registered"]["client_id"]

    _page(other_clinician).post("/clinician/apps/", {"action": "delete", "client_id": client_id})
    assert Application.objects.filter(client_id=client_id).exists()
    _page(clinician).post("/clinician/apps/", {"action": "delete", "client_id": client_id})
    assert not Application.objects.filter(client_id=client_id).exists()


def test_dynamic_registration_with_an_initial_access_token_then_a_pkce_launch(clinician, issue_grant, alice_record):
    issue_grant()
    token = _initial_access_token(clinician)

    response = _dcr(
        token,
        {
            "client_name": "Registered by a tool",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "scope": "launch/patient patient/Observation.rs",
            "allowed_origins": [ORIGIN],
        },
    )

    assert response.status_code == 201, response.content
    client = response.json()
    assert client["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in client
    assert client["redirect_uris"] == [REDIRECT]
    assert Application.objects.get(client_id=client["client_id"]).user == clinician
    # The token registered one client: it is spent.
    assert _dcr(token, {"client_name": "again", "redirect_uris": [REDIRECT]}).status_code == 401

    # A public client: PKCE, no secret.
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    asked = {
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
        "scope": "launch/patient patient/Observation.rs", "state": "s", "code_challenge": challenge,
        "code_challenge_method": "S256", "aud": "http://testserver/fhir",
    }  # fmt: skip
    approved = _page(clinician).post(
        "/oauth/authorize/", {**asked, "allow": "Authorize", "launch_patient": alice_record.fhir_id}
    )
    code = parse_qs(urlsplit(approved["Location"]).query)["code"][0]
    exchanged = Client().post(
        "/oauth/token/",
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
         "client_id": client["client_id"]},
    )  # fmt: skip
    assert exchanged.status_code == 200, exchanged.content
    assert exchanged.json()["patient"] == alice_record.fhir_id


def test_dynamic_registration_refuses_without_a_live_token_and_bad_metadata(clinician):
    assert _dcr(None, {"client_name": "x", "redirect_uris": [REDIRECT]}).status_code == 401
    assert _dcr("made-up", {"client_name": "x", "redirect_uris": [REDIRECT]}).status_code == 401
    expired = _initial_access_token(clinician)
    InitialAccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert _dcr(expired, {"client_name": "x", "redirect_uris": [REDIRECT]}).status_code == 401

    bad = _dcr(_initial_access_token(clinician), {"client_name": "x", "redirect_uris": ["http//nope"]})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_redirect_uri"
    wrong_shape = _dcr(_initial_access_token(clinician), ["not", "an", "object"])
    assert wrong_shape.status_code == 400
    assert wrong_shape.json()["error"] == "invalid_client_metadata"
    assert not Application.objects.exists()


def test_an_initial_access_token_is_kept_only_as_its_hash(clinician):
    token = _initial_access_token(clinician)

    row = InitialAccessToken.objects.get()
    assert row.checksum == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {row.checksum}


@pytest.fixture
def browser_app(clinician):  # type: ignore[no-untyped-def]
    return Application.objects.create(
        name="spa",
        user=clinician,
        client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=REDIRECT,
        allowed_origins=ORIGIN,
    )


def _preflight(path: str, origin: str, method: str = "GET"):  # type: ignore[no-untyped-def]
    return Client().options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )


def test_a_preflight_from_a_registered_origin_is_answered_for_fhir_and_the_token_endpoint(browser_app):
    for path, method in (("/fhir/Observation", "GET"), ("/oauth/token/", "POST"), ("/fhir/Observation/x", "PUT")):
        response = _preflight(path, ORIGIN, method)
        assert response.status_code == 204, path
        assert response["Access-Control-Allow-Origin"] == ORIGIN
        assert "Authorization" in response["Access-Control-Allow-Headers"]
        assert method in response["Access-Control-Allow-Methods"]
        assert "Access-Control-Allow-Credentials" not in response
        assert "Origin" in response["Vary"]


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://app.example.evil.com", "https://app.exampl", "null"]
)
def test_an_unregistered_origin_gets_no_cors_headers(browser_app, origin):  # type: ignore[no-untyped-def]
    refused = _preflight("/fhir/Observation", origin)
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused

    response = Client().get("/fhir/metadata", HTTP_ORIGIN=origin)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response


def test_a_registered_origin_reads_with_its_bearer_token_and_sees_the_headers_it_needs(
    browser_app, token_for, clinician, issue_grant, an_observation
):
    issue_grant()
    response = Client().get(
        f"/fhir/Observation/{an_observation.fhir_id}", HTTP_ORIGIN=ORIGIN, **bearer(token_for(clinician))
    )

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert "ETag" in response["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in response
    # The same read from an unregistered page: served (a bearer token is the credential) but not readable by it.
    stranger = Client().get(
        f"/fhir/Observation/{an_observation.fhir_id}",
        HTTP_ORIGIN="https://evil.example",
        **bearer(token_for(clinician)),
    )
    assert "Access-Control-Allow-Origin" not in stranger


def test_no_origin_no_cors_headers(browser_app):
    response = Client().get("/fhir/metadata")

    assert "Access-Control-Allow-Origin" not in response
    assert "Origin" not in response.get("Vary", "")
