"""OpenID Connect UserInfo at /oauth/userinfo/: who the token's user is, and their fhirUser, for an openid token."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def test_userinfo_names_the_signed_in_clinician_and_her_fhir_user(clinician, signed_in_token_for):
    token = signed_in_token_for(clinician, scope="openid fhirUser user/*.rs")

    response = Client().get("/oauth/userinfo/", **bearer(token))

    assert response.status_code == 200, response.content
    claims = response.json()
    assert claims["sub"] == str(clinician.pk)
    assert claims["fhirUser"] == f"http://testserver/fhir/Practitioner/user-{clinician.pk}"
    practitioner = Client().get(claims["fhirUser"].removeprefix("http://testserver"), **bearer(token))
    assert practitioner.status_code == 200


def test_userinfo_needs_an_openid_token(clinician, signed_in_token_for):
    without_openid = signed_in_token_for(clinician, scope="user/*.rs")
    refused = Client().get("/oauth/userinfo/", **bearer(without_openid))
    # oauthlib checks the openid scope with the token itself: a token without it is not one for this endpoint.
    assert refused.status_code == 401
    assert json.loads(refused.content)["error"] == "invalid_token"
    assert refused["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert Client().get("/oauth/userinfo/").status_code == 401
    assert Client().get("/oauth/userinfo/", **bearer("not-a-token")).status_code == 401


def test_smart_configuration_names_the_userinfo_endpoint(client):  # type: ignore[no-untyped-def]
    config = client.get("/fhir/.well-known/smart-configuration").json()
    assert config["userinfo_endpoint"] == "http://testserver/oauth/userinfo/"
