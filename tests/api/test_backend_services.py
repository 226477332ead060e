"""SMART Backend Services: client_credentials with a signed client assertion (private_key_jwt, RS384 or ES384)."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from datetime import timedelta

import orjson
import pytest
import requests
from django.test import Client
from django.utils import timezone
from jwcrypto import jwk, jwt

from api.backend_services import JwksUnavailable, jwks_fetch
from api.registration import ClientMetadata, client_register
from api.smart_models import ClientAssertionUse, ClientProfile
from consent.models import Grant
from ledger.outbox import outbox_relay
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest
from tests.api.conftest import bearer
from tests.patient_device import grant_issue_signed

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_URL = "http://testserver/oauth/token/"


def _key(kind: str = "RSA") -> jwk.JWK:
    key = jwk.JWK.generate(kty="RSA", size=2048) if kind == "RSA" else jwk.JWK.generate(kty="EC", crv="P-384")
    key.update(kid=key.thumbprint())
    return key


def _public_jwks(*keys: jwk.JWK) -> dict:  # type: ignore[type-arg]
    return {"keys": [k.export_public(as_dict=True) for k in keys]}


def _register(owner, key: jwk.JWK | None = None, *, jwks_uri: str = "", scope: str = "system/*.rs"):  # type: ignore[no-untyped-def]
    metadata = ClientMetadata(
        client_name="nightly sync",
        token_endpoint_auth_method="private_key_jwt",
        jwks=_public_jwks(key) if key is not None else None,
        jwks_uri=jwks_uri,
        scope=scope,
    )
    return client_register(owner=owner, metadata=metadata, via="portal").application


def _assertion(key: jwk.JWK, client_id: str, *, alg: str = "RS384", aud: str = TOKEN_URL, **claims: object) -> str:
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 240, "jti": str(uuid.uuid4()), **claims}
    token = jwt.JWT(header={"alg": alg, "kid": key["kid"], "typ": "JWT"}, claims=body)
    token.make_signed_token(key)
    return str(token.serialize())


def _token_request(assertion: str, scope: str = "system/Observation.rs", client: Client | None = None):  # type: ignore[no-untyped-def]
    return (client or Client()).post(
        "/oauth/token/",
        {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )


@pytest.fixture
def bobs_observation(other_patient) -> Resource:  # type: ignore[no-untyped-def]
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(8, years=1)), actor="system:test", patient=other_patient)
    return Resource.objects.filter(patient=other_patient, resource_type="Observation").order_by("pk").first()


@pytest.mark.django_db
def test_a_backend_client_gets_a_token_that_reads_what_its_owner_may_and_nothing_else(
    api, clinician, issue_grant, an_observation, bobs_observation
):
    issue_grant()
    key = _key()
    app = _register(clinician, key)

    response = _token_request(_assertion(key, app.client_id))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["scope"] == "system/Observation.rs"
    assert body["token_type"] == "Bearer"
    assert "refresh_token" not in body
    assert "patient" not in body
    token = bearer(body["access_token"])
    assert api.get(f"/fhir/Observation/{an_observation.fhir_id}", **token).status_code == 200
    # Bob granted the owner nothing: the backend client sees nothing of his.
    assert api.get(f"/fhir/Observation/{bobs_observation.fhir_id}", **token).status_code == 404


@pytest.mark.django_db
def test_a_client_without_its_owners_grant_sees_nothing(api, other_clinician, issue_grant, an_observation):
    issue_grant()  # to dr_carol; the client belongs to dr_mallory
    key = _key()
    app = _register(other_clinician, key)

    token = bearer(_token_request(_assertion(key, app.client_id)).json()["access_token"])

    assert api.get(f"/fhir/Observation/{an_observation.fhir_id}", **token).status_code == 404
    patient_id = an_observation.patient.fhir_id
    assert api.get(f"/fhir/Observation?patient={patient_id}", **token).json().get("entry", []) == []


@pytest.mark.django_db
def test_a_replayed_assertion_is_refused(clinician):
    key = _key()
    app = _register(clinician, key)
    assertion = _assertion(key, app.client_id)

    assert _token_request(assertion).status_code == 200
    replay = _token_request(assertion)

    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert ClientAssertionUse.objects.filter(application=app).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 120},  # expired
        {"exp": int(time.time()) + 3600},  # more than five minutes ahead
        {"aud": "https://other.example/oauth/token/"},  # another server's token endpoint
        {"aud": "http://testserver/fhir"},  # the FHIR base is not the token endpoint
        {"iss": "someone-else"},
        {"sub": "someone-else"},
        {"jti": ""},
        {"exp": "soon"},
    ],
)
def test_an_assertion_with_bad_claims_is_refused(clinician, claims):  # type: ignore[no-untyped-def]
    key = _key()
    app = _register(clinician, key)
    if claims.get("iss") == "someone-else":
        assertion = _assertion(key, app.client_id, iss="someone-else")
    else:
        assertion = _assertion(key, app.client_id, **claims)

    response = _token_request(assertion)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.django_db
def test_an_assertion_signed_by_another_key_or_algorithm_is_refused(clinician):
    key, stranger = _key(), _key()
    app = _register(clinician, key)
    forged = _key()
    forged.update(kid=key["kid"])  # claims to be the registered key

    assert _token_request(_assertion(forged, app.client_id)).status_code == 401
    assert _token_request(_assertion(stranger, app.client_id)).status_code == 401
    assert _token_request(_assertion(key, app.client_id, alg="RS256")).status_code == 401  # only RS384 and ES384
    assert _token_request("not.a.jwt").status_code == 401
    assert _token_request(_assertion(key, app.client_id)).status_code == 200


@pytest.mark.django_db
def test_a_scope_beyond_what_the_client_registered_is_refused(clinician):
    key = _key()
    app = _register(clinician, key, scope="system/Observation.rs")

    assert _token_request(_assertion(key, app.client_id), scope="system/Condition.rs").json()["error"] == (
        "invalid_scope"
    )
    assert _token_request(_assertion(key, app.client_id), scope="system/Observation.cruds").status_code == 400
    assert _token_request(_assertion(key, app.client_id), scope="system/Observation.r").status_code == 200


class _JwksServer:
    """A client's own web server publishing its JWKS (the registered jwks_uri), on a free local port."""

    def __init__(self, document: bytes) -> None:
        payload = document

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_over_http(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMART_JWKS_URI_HTTP_ALLOWED = True  # the test's JWKS server speaks plain HTTP on loopback
    settings.SMART_JWKS_URI_PRIVATE_ALLOWED = True


@pytest.mark.django_db(transaction=True)
def test_es384_with_a_jwks_uri_over_http_against_a_live_server(
    live_server, jwks_over_http, clinician, patient_user, alice_record, deployed
):
    now = timezone.now()
    grant = grant_issue_signed(
        patient=alice_record,
        by=patient_user,
        grantee=clinician,
        resource_types=["Observation"],
        actions=["read"],
        purpose="TREAT",
        not_before=now - timedelta(minutes=1),
        not_after=now + timedelta(days=30),
    )
    outbox_relay()
    if Grant.objects.get(pk=grant.pk).status == "pending":
        outbox_relay()
    key = _key("EC")
    with _JwksServer(json.dumps(_public_jwks(key)).encode()) as published:
        app = _register(clinician, jwks_uri=published.url)
        token_url = f"{live_server.url}/oauth/token/"
        response = requests.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "scope": "system/Observation.rs",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": _assertion(key, app.client_id, alg="ES384", aud=token_url),
            },
            timeout=30,
        )
    assert response.status_code == 200, response.text
    access = response.json()["access_token"]
    found = requests.get(
        f"{live_server.url}/fhir/Observation",
        params={"patient": alice_record.fhir_id, "_count": 5},
        headers={"Authorization": f"Bearer {access}"},
        timeout=30,
    )
    assert found.status_code == 200
    assert len(found.json()["entry"]) == 5


@pytest.mark.django_db
def test_a_jwks_uri_serving_too_much_is_refused(settings, jwks_over_http, clinician):
    settings.SMART_JWKS_MAX_BYTES = 1024
    key = _key()
    padded = _public_jwks(key) | {"padding": "x" * 4096}
    with _JwksServer(json.dumps(padded).encode()) as published:
        app = _register(clinician, jwks_uri=published.url)
        response = _token_request(_assertion(key, app.client_id))

    assert response.status_code == 401


@pytest.mark.django_db
def test_a_jwks_uri_that_does_not_answer_is_refused_in_bounded_time(settings, jwks_over_http, clinician):
    settings.SMART_JWKS_FETCH_TIMEOUT = 1
    silent = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    key = _key()
    try:
        # Accepts the connection (the listen backlog) and never answers.
        app = _register(clinician, jwks_uri=f"http://127.0.0.1:{silent.server_address[1]}/jwks.json")
        started = time.monotonic()
        response = _token_request(_assertion(key, app.client_id))
        elapsed = time.monotonic() - started
    finally:
        silent.server_close()

    assert response.status_code == 401
    assert elapsed < 5


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.8", "169.254.169.254", "localhost", "[::1]"])
def test_a_jwks_uri_on_the_servers_own_network_is_never_fetched(settings, clinician, host):  # type: ignore[no-untyped-def]
    settings.SMART_JWKS_URI_HTTP_ALLOWED = False  # production: https to public hosts only
    settings.SMART_JWKS_URI_PRIVATE_ALLOWED = False
    key = _key()
    app = _register(clinician, key)
    ClientProfile.objects.filter(application=app).update(jwks=None, jwks_uri=f"https://{host}/jwks.json")

    with pytest.raises(JwksUnavailable, match="public host"):
        jwks_fetch(f"https://{host}/jwks.json")
    assert _token_request(_assertion(key, app.client_id)).status_code == 401
