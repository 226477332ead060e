"""SMART App Launch: launch/patient with the clinician's picker, patient/ scopes pinned, id_token with fhirUser."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from django.test import Client
from django.utils import timezone
from jwcrypto import jwk, jwt
from oauth2_provider.models import Application

from api.smart_models import TokenLaunch
from audit.models import AccessLogEntry
from consent.models import Grant
from ledger.outbox import outbox_relay
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest
from tests.api.conftest import basic, bearer, register_app
from tests.patient_device import grant_issue_signed, grant_revoke_signed

pytestmark = pytest.mark.django_db

REDIRECT = "https://app.example/callback"
AUD = "http://testserver/fhir"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Launch:
    """One authorization-code launch by `user`, step by step: the approval page, the approval, the exchange."""

    def __init__(self, user, scope: str, *, skip: bool = False) -> None:  # type: ignore[no-untyped-def]
        self.app, self.secret = register_app(
            user, grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris=REDIRECT, skip_authorization=skip
        )
        self.browser = Client()
        self.browser.force_login(user)
        self.verifier, challenge = _pkce()
        self.asked = {
            "response_type": "code",
            "client_id": self.app.client_id,
            "redirect_uri": REDIRECT,
            "scope": scope,
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "aud": AUD,
        }

    def page(self):  # type: ignore[no-untyped-def]
        return self.browser.get("/oauth/authorize/", self.asked)

    def approve(self, **extra: str):  # type: ignore[no-untyped-def]
        return self.browser.post("/oauth/authorize/", {**self.asked, "allow": "Authorize", **extra})

    def exchange(self, approved) -> dict:  # type: ignore[no-untyped-def, type-arg]
        assert approved.status_code == 302, approved.content
        code = parse_qs(urlsplit(approved["Location"]).query)["code"][0]
        response = Client().post(
            "/oauth/token/",
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": self.verifier,
            },
            HTTP_AUTHORIZATION=basic(self.app.client_id, self.secret),
        )
        assert response.status_code == 200, response.content
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def bob_shared(other_patient, clinician, deployed):  # type: ignore[no-untyped-def]
    """Bob's record with data, and his grant to the same clinician (Observations, treatment)."""
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(8, years=1)), actor="system:test", patient=other_patient)
    now = timezone.now()
    grant_issue_signed(
        patient=other_patient,
        by=other_patient.user,
        grantee=clinician,
        resource_types=["Observation"],
        actions=["read"],
        purpose="TREAT",
        not_before=now - timedelta(minutes=1),
        not_after=now + timedelta(days=30),
    )
    outbox_relay()
    if Grant.objects.filter(patient=other_patient, status="pending").exists():
        outbox_relay()
    return other_patient


def _observation(record) -> Resource:  # type: ignore[no-untyped-def]
    return Resource.objects.filter(patient=record, resource_type="Observation").order_by("pk").first()


def _verified_claims(id_token: str) -> dict:  # type: ignore[type-arg]
    keys = Client().get("/oauth/jwks").json()
    assert [k["kty"] for k in keys["keys"]] == ["RSA"]
    assert all("d" not in k and "p" not in k for k in keys["keys"])  # the public half only
    keyset = jwk.JWKSet.from_json(json.dumps(keys))
    header = json.loads(base64.urlsafe_b64decode(id_token.split(".")[0] + "==="))
    assert header["alg"] == "RS256"
    verified = jwt.JWT(jwt=id_token, key=keyset, algs=["RS256"])
    return json.loads(verified.claims)  # type: ignore[no-any-return]


def test_smart_configuration_declares_what_is_supported(api):  # type: ignore[no-untyped-def]
    config = api.get("/fhir/.well-known/smart-configuration").json()

    assert config["jwks_uri"] == "http://testserver/oauth/jwks"
    assert config["issuer"] == "http://testserver"
    assert {"launch-standalone", "context-standalone-patient", "sso-openid-connect", "permission-patient",
            "client-confidential-asymmetric", "permission-v2"} <= set(config["capabilities"])  # fmt: skip
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"launch/patient", "openid", "fhirUser"} <= set(config["scopes_supported"])
    assert api.get("/oauth/jwks").status_code == 200


def test_a_clinician_picks_a_patient_and_the_token_names_them_and_reaches_only_them(
    api, clinician, issue_grant, alice_record, bob_shared
):
    issue_grant()
    launch = Launch(clinician, "launch/patient openid fhirUser patient/Observation.rs")

    page = launch.page()
    assert page.status_code == 200
    names = {p.fhir_id for p, _ in page.context["launch_patients"]}
    assert names == {alice_record.fhir_id, bob_shared.fhir_id}  # exactly the patients whose live grants name her
    tokens = launch.exchange(launch.approve(launch_patient=alice_record.fhir_id))

    assert tokens["patient"] == alice_record.fhir_id
    access = bearer(tokens["access_token"])
    assert api.get(f"/fhir/Observation/{_observation(alice_record).fhir_id}", **access).status_code == 200
    # Bob shared with her too, but this token's patient is Alice: Bob's data is as if it did not exist.
    assert api.get(f"/fhir/Observation/{_observation(bob_shared).fhir_id}", **access).status_code == 404
    search = api.get(f"/fhir/Observation?patient={bob_shared.fhir_id}", **access)
    assert search.status_code == 200
    assert search.json().get("entry", []) == []
    assert api.get(f"/fhir/Observation?patient={alice_record.fhir_id}", **access).json()["entry"]
    # No patient named: the search is of the patient in context.
    unnamed = api.get("/fhir/Observation?_count=100", **access).json()
    assert unnamed["total"] == Resource.objects.filter(patient=alice_record, resource_type="Observation").count()
    assert all(e["resource"]["subject"]["reference"] == f"Patient/{alice_record.fhir_id}" for e in unnamed["entry"])
    assert AccessLogEntry.objects.filter(outcome="deny", actor=f"user:{clinician.pk}").exists()


def test_the_picker_refuses_a_patient_without_a_live_grant(api, clinician, issue_grant, alice_record, other_patient):
    issue_grant()
    launch = Launch(clinician, "launch/patient patient/Observation.rs")

    refused = launch.approve(launch_patient=other_patient.fhir_id)  # Bob never shared with her

    assert refused.status_code == 400
    assert "Location" not in refused
    assert not TokenLaunch.objects.exists()
    assert [p.fhir_id for p, _ in refused.context["launch_patients"]] == [alice_record.fhir_id]


def test_a_skip_authorization_app_still_shows_the_picker(clinician, issue_grant, alice_record):
    issue_grant()
    launch = Launch(clinician, "launch/patient patient/Observation.rs", skip=True)

    page = launch.page()

    assert page.status_code == 200  # no code was issued without a patient chosen
    assert [p.fhir_id for p, _ in page.context["launch_patients"]] == [alice_record.fhir_id]
    assert launch.exchange(launch.approve(launch_patient=alice_record.fhir_id))["patient"] == alice_record.fhir_id


def test_a_clinician_without_grants_has_no_patient_to_pick(other_clinician, issue_grant, alice_record):
    issue_grant()  # to dr_carol, not to dr_mallory
    launch = Launch(other_clinician, "launch/patient patient/Observation.rs")

    page = launch.page()
    assert page.context["launch_patients"] == []
    assert b"no patient to choose" in page.content
    assert launch.approve(launch_patient=alice_record.fhir_id).status_code == 400


def test_a_pinned_token_sees_nothing_once_its_patients_grant_is_revoked(
    api, clinician, patient_user, issue_grant, alice_record
):
    grant = issue_grant()
    launch = Launch(clinician, "launch/patient patient/Observation.rs")
    tokens = launch.exchange(launch.approve(launch_patient=alice_record.fhir_id))
    observation = _observation(alice_record)
    assert api.get(f"/fhir/Observation/{observation.fhir_id}", **bearer(tokens["access_token"])).status_code == 200

    grant_revoke_signed(grant=grant, by=patient_user)

    assert api.get(f"/fhir/Observation/{observation.fhir_id}", **bearer(tokens["access_token"])).status_code == 404


def test_id_token_is_rs256_and_its_fhir_user_is_the_clinicians_practitioner(
    api, clinician, other_clinician, issue_grant, alice_record
):
    issue_grant()
    launch = Launch(clinician, "openid fhirUser launch/patient patient/Observation.rs")
    tokens = launch.exchange(launch.approve(launch_patient=alice_record.fhir_id))

    claims = _verified_claims(tokens["id_token"])
    assert claims["iss"] == "http://testserver"
    assert claims["aud"] == launch.app.client_id
    assert claims["sub"] == str(clinician.pk)
    assert claims["fhirUser"] == f"http://testserver/fhir/Practitioner/user-{clinician.pk}"
    assert claims["exp"] > claims["iat"]
    practitioner = api.get(claims["fhirUser"].removeprefix("http://testserver"), **bearer(tokens["access_token"]))
    assert practitioner.status_code == 200
    assert practitioner.json()["resourceType"] == "Practitioner"
    assert practitioner.json()["id"] == f"user-{clinician.pk}"
    # Another clinician's token does not resolve her entry.
    other = Launch(other_clinician, "openid fhirUser user/Observation.rs")
    other_tokens = other.exchange(other.approve())
    assert api.get(f"/fhir/Practitioner/user-{clinician.pk}", **bearer(other_tokens["access_token"])).status_code == 404


def test_a_patient_signing_in_has_her_own_record_in_context_and_fhir_user(api, patient_user, alice_record, bob_shared):
    launch = Launch(patient_user, "openid fhirUser launch/patient patient/*.rs")

    tokens = launch.exchange(launch.approve())

    assert tokens["patient"] == alice_record.fhir_id
    claims = _verified_claims(tokens["id_token"])
    assert claims["fhirUser"] == f"http://testserver/fhir/Patient/{alice_record.fhir_id}"
    me = api.get(claims["fhirUser"].removeprefix("http://testserver"), **bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == alice_record.fhir_id


def test_without_openid_there_is_no_id_token(clinician, issue_grant, alice_record):
    issue_grant()
    launch = Launch(clinician, "user/Observation.rs")

    tokens = launch.exchange(launch.approve())

    assert "id_token" not in tokens
    assert "patient" not in tokens


def test_a_refreshed_token_keeps_its_patient(api, clinician, issue_grant, alice_record, bob_shared):
    issue_grant()
    launch = Launch(clinician, "openid fhirUser launch/patient patient/Observation.rs offline_access")
    tokens = launch.exchange(launch.approve(launch_patient=alice_record.fhir_id))

    refreshed = Client().post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        HTTP_AUTHORIZATION=basic(launch.app.client_id, launch.secret),
    )

    assert refreshed.status_code == 200, refreshed.content
    assert refreshed.json()["patient"] == alice_record.fhir_id
    assert _verified_claims(refreshed.json()["id_token"])["fhirUser"].endswith(f"/Practitioner/user-{clinician.pk}")
    access = bearer(refreshed.json()["access_token"])
    assert api.get(f"/fhir/Observation/{_observation(bob_shared).fhir_id}", **access).status_code == 404
    assert api.get(f"/fhir/Observation/{_observation(alice_record).fhir_id}", **access).status_code == 200


def test_an_authorization_request_for_another_server_is_refused(clinician):
    launch = Launch(clinician, "launch/patient patient/Observation.rs")
    launch.asked["aud"] = "https://other.example/fhir"

    response = launch.page()

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_a_clinicians_client_credentials_token_cannot_ask_for_patient_scopes(clinician):
    app, secret = register_app(clinician)

    response = Client().post(
        "/oauth/token/",
        {"grant_type": "client_credentials", "scope": "patient/Observation.rs"},
        HTTP_AUTHORIZATION=basic(app.client_id, secret),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
