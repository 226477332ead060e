"""SMART EHR launch: an app opened from the clinician's patient page gets that patient, once, soon, and only there."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import requests
from django.conf import settings
from django.test import Client
from django.utils import timezone

from api.registration import ClientMetadata, RegistrationError, client_register
from api.smart_models import ClientProfile, EhrLaunch
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest
from tests.api.conftest import bearer
from tests.api.test_smart_launch import Launch
from tests.patient_device import grant_revoke_signed

LAUNCH_URL = "https://app.example/launch"
REDIRECT = "https://app.example/callback"
SCOPE = "launch openid fhirUser patient/Observation.rs"


def _page(user, **extra: str) -> Client:  # type: ignore[no-untyped-def]
    browser = Client(**extra)
    browser.force_login(user)
    return browser


def _open_app(browser: Client, patient, client_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The clinician presses "Open" for the app on the patient's launch page: the query the app is opened with."""
    response = browser.post(f"/clinician/apps/launch/{patient.pk}/", {"client_id": client_id})
    assert response.status_code == 302, response.content
    location = response["Location"]
    assert location.startswith(LAUNCH_URL + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _ehr_app(clinician) -> Launch:  # type: ignore[no-untyped-def]
    launch = Launch(clinician, SCOPE)
    ClientProfile.objects.create(application=launch.app, launch_uri=LAUNCH_URL)
    return launch


@pytest.mark.django_db
def test_an_app_opened_from_the_patients_page_gets_that_patient_in_the_token(
    clinician, issue_grant, alice_record, other_patient
):
    issue_grant()
    app = _ehr_app(clinician)
    patient_page = _page(clinician).get(f"/clinician/patients/{alice_record.pk}/")
    assert f"/clinician/apps/launch/{alice_record.pk}/".encode() in patient_page.content
    listing = _page(clinician).get(f"/clinician/apps/launch/{alice_record.pk}/")
    assert listing.status_code == 200
    assert app.app.client_id.encode() in listing.content

    opened = _open_app(_page(clinician), alice_record, app.app.client_id)
    assert opened["iss"] == "http://testserver/fhir"
    app.asked["launch"] = opened["launch"]
    page = app.page()
    assert page.status_code == 200
    assert b'name="launch"' in page.content
    assert b"launch_patient" not in page.content  # no picker: the launch names the patient
    token = app.exchange(app.approve())

    assert token["patient"] == alice_record.fhir_id
    assert "launch" in token["scope"].split()
    observation = Resource.objects.filter(patient=alice_record, resource_type="Observation").first()
    assert Client().get(f"/fhir/Observation/{observation.fhir_id}", **bearer(token["access_token"])).status_code == 200
    row = EhrLaunch.objects.get()
    assert (row.clinician_id, row.patient_id, row.used_at is not None) == (clinician.pk, alice_record.pk, True)
    assert opened["launch"] not in row.checksum  # only its hash is kept


@pytest.mark.django_db
def test_a_launch_is_used_once(clinician, issue_grant, alice_record):
    issue_grant()
    app = _ehr_app(clinician)
    app.asked["launch"] = _open_app(_page(clinician), alice_record, app.app.client_id)["launch"]
    assert app.approve().status_code == 302

    again = app.page()
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_request"
    assert app.approve().status_code == 400


@pytest.mark.django_db
def test_an_expired_launch_is_refused(clinician, issue_grant, alice_record):
    issue_grant()
    app = _ehr_app(clinician)
    app.asked["launch"] = _open_app(_page(clinician), alice_record, app.app.client_id)["launch"]
    EhrLaunch.objects.update(expires=timezone.now() - timedelta(seconds=1))

    assert app.page().status_code == 400
    assert app.approve().status_code == 400
    assert EhrLaunch.objects.get().used_at is None


@pytest.mark.django_db
def test_a_launch_holds_only_for_its_clinician_and_app(clinician, other_clinician, issue_grant, alice_record):
    issue_grant()
    app = _ehr_app(clinician)
    launch = _open_app(_page(clinician), alice_record, app.app.client_id)["launch"]
    # Another clinician's browser carrying the same launch id.
    stolen = Launch(other_clinician, SCOPE)
    stolen.app, stolen.secret = app.app, app.secret
    stolen.asked["client_id"] = app.app.client_id
    stolen.asked["launch"] = launch
    assert stolen.page().status_code == 400
    # The same clinician, through another of her apps.
    other_app = _ehr_app(clinician)
    other_app.asked["launch"] = launch
    assert other_app.page().status_code == 400
    assert other_app.approve().status_code == 400
    # A launch scope without a launch id.
    app.asked.pop("launch", None)
    assert app.page().status_code == 400
    assert EhrLaunch.objects.get().used_at is None


@pytest.mark.django_db
def test_a_grant_revoked_after_the_launch_refuses_it(clinician, patient_user, issue_grant, alice_record):
    grant = issue_grant()
    app = _ehr_app(clinician)
    app.asked["launch"] = _open_app(_page(clinician), alice_record, app.app.client_id)["launch"]
    page = app.page()
    assert page.status_code == 200

    grant_revoke_signed(grant=grant, by=patient_user)

    assert app.approve().status_code == 400
    # And no app can be opened for her any more.
    refused = _page(clinician).post(f"/clinician/apps/launch/{alice_record.pk}/", {"client_id": app.app.client_id})
    assert refused.status_code == 404


@pytest.mark.django_db
def test_no_launch_for_a_patient_who_granted_nothing_or_an_app_without_a_launch_url(
    clinician, other_clinician, issue_grant, alice_record
):
    issue_grant()
    app = _ehr_app(clinician)
    assert _page(other_clinician).get(f"/clinician/apps/launch/{alice_record.pk}/").status_code == 404
    theirs = _ehr_app(other_clinician)
    refused = _page(clinician).post(f"/clinician/apps/launch/{alice_record.pk}/", {"client_id": theirs.app.client_id})
    assert refused.status_code == 400  # not her app
    ClientProfile.objects.filter(application=app.app).update(launch_uri="")
    refused = _page(clinician).post(f"/clinician/apps/launch/{alice_record.pk}/", {"client_id": app.app.client_id})
    assert refused.status_code == 400
    assert not EhrLaunch.objects.exists()
    assert Client().get(f"/clinician/apps/launch/{alice_record.pk}/").status_code == 302  # sign in first


@pytest.mark.django_db
def test_a_launch_url_is_registered_on_the_apps_page_and_must_be_a_plain_web_url(clinician):
    browser = _page(clinician)
    fields = {"action": "register", "client_name": "Charts", "client_kind": "public", "redirect_uris": LAUNCH_URL}
    registered = browser.post("/clinician/apps/", {**fields, "launch_uri": LAUNCH_URL})
    assert registered.status_code == 200
    assert ClientProfile.objects.get().launch_uri == LAUNCH_URL
    for bad, redirects in [("javascript:alert(1)", [REDIRECT]), (f"{LAUNCH_URL}#x", [REDIRECT]), (LAUNCH_URL, [])]:
        with pytest.raises(RegistrationError):
            client_register(
                owner=clinician,
                metadata=ClientMetadata(client_name="x", redirect_uris=redirects, launch_uri=bad),
                via="portal",
            )


def test_smart_configuration_declares_the_ehr_launch(client):  # type: ignore[no-untyped-def]
    config = client.get("/fhir/.well-known/smart-configuration").json()
    assert {"launch-ehr", "context-ehr-patient"} <= set(config["capabilities"])
    assert "launch" in config["scopes_supported"]


_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@pytest.mark.django_db(transaction=True)
def test_fhirclient_ehr_launch_from_the_patients_page(live_server, clinician, issue_grant, alice_record, other_patient):
    from fhirclient import client as smart_client
    from fhirclient.models.observation import Observation

    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(8, years=1)), actor="system:test", patient=other_patient)
    issue_grant(resource_types=["Observation", "Patient"])
    issue_grant(patient=other_patient, by=other_patient.user, resource_types=["Observation", "Patient"])
    app = client_register(
        owner=clinician,
        metadata=ClientMetadata(
            client_name="charts", redirect_uris=[REDIRECT], token_endpoint_auth_method="none", launch_uri=LAUNCH_URL
        ),
        via="portal",
    ).application
    host = urlsplit(live_server.url).netloc
    opened = _open_app(_page(clinician, HTTP_HOST=host), alice_record, app.client_id)
    assert opened["iss"] == f"{live_server.url}/fhir"
    # The app, opened at its launch URL with iss and launch, starts an unmodified fhirclient EHR launch.
    smart = smart_client.FHIRClient(
        settings={
            "app_id": app.client_id,
            "api_base": opened["iss"],
            "redirect_uri": REDIRECT,
            "scope": "openid fhirUser patient/Observation.rs patient/Patient.rs",
            "launch_token": opened["launch"],
        }
    )
    django_client = _page(clinician)
    browser = requests.Session()
    browser.cookies.set(settings.SESSION_COOKIE_NAME, django_client.cookies[settings.SESSION_COOKIE_NAME].value)

    page = browser.get(smart.authorize_url, timeout=30)
    assert page.status_code == 200, page.text
    assert "launch_patient" not in page.text
    form = {name: html.unescape(value) for name, value in _HIDDEN.findall(page.text)}
    assert form["launch"] == opened["launch"]
    approved = browser.post(
        page.url, data={**form, "allow": "Authorize"}, headers={"Referer": page.url}, allow_redirects=False, timeout=30
    )
    assert approved.status_code == 302, approved.text
    smart.handle_callback(approved.headers["Location"])

    assert smart.patient_id == alice_record.fhir_id
    mine = list(Observation.where(struct={"patient": alice_record.fhir_id}).perform_resources_iter(smart.server))
    assert len(mine) == Resource.objects.filter(patient=alice_record, resource_type="Observation").count() > 0
    theirs = list(Observation.where(struct={"patient": other_patient.fhir_id}).perform_resources_iter(smart.server))
    assert theirs == []
