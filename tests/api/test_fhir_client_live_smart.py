"""The unmodified fhirclient library (SMART on FHIR, PyPI) against a live server: a standalone patient launch with
the clinician's patient picker, and a backend service authenticating with a signed client assertion."""

from __future__ import annotations

import html
import re
import time
import uuid
from datetime import timedelta

import orjson
import pytest
import requests
from django.conf import settings
from django.test import Client
from django.utils import timezone
from jwcrypto import jwk, jwt

from api.registration import ClientMetadata, client_register
from consent.models import Grant
from ledger.outbox import outbox_relay
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest

fhirclient = pytest.importorskip("fhirclient")
from fhirclient import client as smart_client  # noqa: E402
from fhirclient.models.observation import Observation  # noqa: E402
from fhirclient.server import FHIRUnauthorizedException  # noqa: E402

from tests.patient_device import grant_issue_signed  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

REDIRECT = "https://app.example/callback"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def _grant(record, owner, clinician) -> None:  # type: ignore[no-untyped-def]
    now = timezone.now()
    grant = grant_issue_signed(
        patient=record,
        by=owner,
        grantee=clinician,
        resource_types=["Observation", "Patient"],
        actions=["read"],
        purpose="TREAT",
        not_before=now - timedelta(minutes=1),
        not_after=now + timedelta(days=30),
    )
    outbox_relay()
    if Grant.objects.get(pk=grant.pk).status == "pending":
        outbox_relay()


def _observations(record) -> int:  # type: ignore[no-untyped-def]
    return Resource.objects.filter(patient=record, resource_type="Observation").count()


def _signed_in_session(user) -> requests.Session:  # type: ignore[no-untyped-def]
    django_client = Client()
    django_client.force_login(user)
    session = requests.Session()
    session.cookies.set(settings.SESSION_COOKIE_NAME, django_client.cookies[settings.SESSION_COOKIE_NAME].value)
    return session


def test_fhirclient_standalone_launch_picks_a_patient_and_reads_only_that_patient(
    live_server, clinician, patient_user, alice_record, other_patient, deployed
):
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(8, years=1)), actor="system:test", patient=other_patient)
    _grant(alice_record, patient_user, clinician)
    _grant(other_patient, other_patient.user, clinician)
    app = client_register(
        owner=clinician,
        metadata=ClientMetadata(client_name="charts", redirect_uris=[REDIRECT], token_endpoint_auth_method="none"),
        via="portal",
    ).application
    smart = smart_client.FHIRClient(
        settings={
            "app_id": app.client_id,
            "api_base": f"{live_server.url}/fhir",
            "redirect_uri": REDIRECT,
            "scope": "openid fhirUser patient/Observation.rs patient/Patient.rs",
        }
    )
    browser = _signed_in_session(clinician)

    page = browser.get(smart.authorize_url, timeout=30)
    assert page.status_code == 200, page.text
    assert alice_record.fhir_id in page.text  # the picker lists both patients who shared with her
    assert other_patient.fhir_id in page.text
    form = {name: html.unescape(value) for name, value in _HIDDEN.findall(page.text)}
    approved = browser.post(
        page.url,
        data={**form, "allow": "Authorize", "launch_patient": alice_record.fhir_id},
        headers={"Referer": page.url},
        allow_redirects=False,
        timeout=30,
    )
    assert approved.status_code == 302, approved.text
    smart.handle_callback(approved.headers["Location"])

    assert smart.patient_id == alice_record.fhir_id
    assert smart.patient.id == alice_record.fhir_id
    mine = list(Observation.where(struct={"patient": alice_record.fhir_id}).perform_resources_iter(smart.server))
    assert len(mine) == _observations(alice_record) > 0
    theirs = list(Observation.where(struct={"patient": other_patient.fhir_id}).perform_resources_iter(smart.server))
    assert theirs == []  # Bob shared with her too, but the launch was for Alice


def test_fhirclient_backend_service_with_a_client_assertion(
    live_server, clinician, patient_user, alice_record, deployed
):
    _grant(alice_record, patient_user, clinician)
    key = jwk.JWK.generate(kty="EC", crv="P-384")
    key.update(kid=key.thumbprint())
    app = client_register(
        owner=clinician,
        metadata=ClientMetadata(
            client_name="sync",
            token_endpoint_auth_method="private_key_jwt",
            jwks={"keys": [key.export_public(as_dict=True)]},
        ),
        via="portal",
    ).application
    now = int(time.time())
    claims = {"iss": app.client_id, "sub": app.client_id, "aud": f"{live_server.url}/oauth/token/",
              "exp": now + 240, "jti": str(uuid.uuid4())}  # fmt: skip
    assertion = jwt.JWT(header={"alg": "ES384", "kid": key["kid"]}, claims=claims)
    assertion.make_signed_token(key)
    smart = smart_client.FHIRClient(
        settings={
            "app_id": app.client_id,
            "api_base": f"{live_server.url}/fhir",
            "jwt_token": assertion.serialize(),
            "scope": "system/Observation.rs",
        }
    )
    smart.prepare()
    smart.server.authorize()

    found = list(Observation.where(struct={"patient": alice_record.fhir_id}).perform_resources_iter(smart.server))
    assert len(found) == _observations(alice_record) > 0
    # The same assertion again is a replay: refused.
    with pytest.raises(FHIRUnauthorizedException):
        smart.server.authorize()
