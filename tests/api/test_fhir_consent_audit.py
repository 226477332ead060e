"""Consent (the patient and the grantee) and AuditEvent (the patient's own access log) over FHIR."""

from __future__ import annotations

import base64

import orjson
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent

from audit.models import AccessLogEntry
from consent.fhir import consent_id
from records.models import Resource
from tests.api.conftest import bearer
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db


def _get(api, token: str, url: str):  # type: ignore[no-untyped-def]
    response = api.get(url, **bearer(token))
    return response, orjson.loads(response.content)


@pytest.mark.parametrize("persona", ["patient_user", "clinician"])
def test_the_patient_and_the_grantee_read_and_search_the_consent_of_a_grant(
    request, api, persona, token_for, issue_grant
):
    grant = issue_grant()
    token = token_for(request.getfixturevalue(persona))

    response, consent = _get(api, token, f"/fhir/Consent/{consent_id(grant)}")
    _, bundle = _get(api, token, "/fhir/Consent?status=active")

    assert response.status_code == 200
    Consent.model_validate(consent)
    assert consent["status"] == "active"
    assert consent["provision"]["purpose"][0]["code"] == "TREAT"
    assert response["Last-Modified"]
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"] == consent
    Bundle.model_validate(bundle)


@pytest.mark.parametrize("persona", ["other_clinician", "researcher", "other_patient"])
def test_anyone_else_gets_for_a_consent_what_a_stranger_gets_for_one_that_does_not_exist(
    request, api, persona, token_for, issue_grant
):
    grant = issue_grant()
    who = request.getfixturevalue(persona)
    token = token_for(who.user if persona == "other_patient" else who)

    denied = api.get(f"/fhir/Consent/{consent_id(grant)}", **bearer(token))
    missing = api.get(f"/fhir/Consent/{'ab' * 32}", **bearer(token))
    search = api.get(f"/fhir/Consent?_id={consent_id(grant)}", **bearer(token))
    search_missing = api.get(f"/fhir/Consent?_id={'ab' * 32}", **bearer(token))

    assert denied.status_code == missing.status_code == 404
    assert denied.content == missing.content
    assert search.content == search_missing.content.replace(b"ab" * 32, consent_id(grant).encode())
    assert orjson.loads(search.content)["total"] == 0


def test_a_revoked_grant_reads_as_an_inactive_consent(api, patient_user, token_for, issue_grant):
    grant = issue_grant()
    grant_revoke_signed(grant=grant, by=patient_user)
    token = token_for(patient_user)

    assert _get(api, token, f"/fhir/Consent/{consent_id(grant)}")[1]["status"] == "inactive"
    assert _get(api, token, "/fhir/Consent?status=active")[1]["total"] == 0
    assert _get(api, token, "/fhir/Consent?status=inactive")[1]["total"] == 1


def test_the_patient_searches_her_access_log_as_audit_events(
    api, patient_user, clinician, other_clinician, token_for, issue_grant, an_observation
):
    grant = issue_grant()
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    api.get(url, **bearer(token_for(clinician)))
    api.get(url, **bearer(token_for(other_clinician)))
    token = token_for(patient_user)

    response, bundle = _get(api, token, "/fhir/AuditEvent?subtype=records.read&_sort=-date")

    assert response.status_code == 200
    Bundle.model_validate(bundle)
    events = [e["resource"] for e in bundle["entry"]]
    assert bundle["total"] == 2
    denied, permitted = events  # newest first
    for event in events:
        AuditEvent.model_validate(event)
    assert (permitted["outcome"], denied["outcome"]) == ("0", "4")
    assert permitted["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert permitted["agent"][0]["who"]["display"] == "dr_carol"
    assert permitted["agent"][0]["policy"] == [f"urn:healthledger:grant:{grant.id}"]
    whats = [e.get("what", {}) for e in permitted["entity"]]
    patient_fhir_id = Resource.objects.get(patient=an_observation.patient, resource_type="Patient").fhir_id
    assert {"reference": f"Patient/{patient_fhir_id}"} in whats
    assert {"reference": f"Observation/{an_observation.fhir_id}/_history/1"} in whats
    assert {"identifier": {"system": "urn:healthledger:grant", "value": grant.id}} in whats
    assert _get(api, token, "/fhir/AuditEvent?outcome=4")[1]["total"] == 1
    one = _get(api, token, f"/fhir/AuditEvent/{permitted['id']}")[1]
    assert one == permitted


def test_a_search_entry_carries_its_query(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    api.get("/fhir/Observation?code=http://loinc.org|8867-4", **bearer(token))

    _, bundle = _get(api, token, "/fhir/AuditEvent?subtype=records.search")

    (event,) = [e["resource"] for e in bundle["entry"]]
    queries = [e["query"] for e in event["entity"] if "query" in e]
    assert base64.b64decode(queries[0]).decode() == "code=http://loinc.org|8867-4"


@pytest.mark.parametrize("persona", ["clinician", "other_clinician", "researcher", "other_patient"])
def test_nobody_else_sees_the_patients_audit_events(request, api, persona, token_for, patient_user, an_observation):
    api.get(f"/fhir/Observation/{an_observation.fhir_id}", **bearer(token_for(patient_user)))
    entry = AccessLogEntry.objects.get(action="records.read")
    who = request.getfixturevalue(persona)
    token = token_for(who.user if persona == "other_patient" else who)
    patient_fhir_id = Resource.objects.get(patient=an_observation.patient, resource_type="Patient").fhir_id

    denied = api.get(f"/fhir/AuditEvent/{entry.pk}", **bearer(token))
    missing = api.get("/fhir/AuditEvent/999999999", **bearer(token))
    search = api.get(f"/fhir/AuditEvent?patient={patient_fhir_id}", **bearer(token))
    nobody = api.get("/fhir/AuditEvent?patient=" + "x" * len(patient_fhir_id), **bearer(token))

    assert denied.status_code == missing.status_code == 404
    assert denied.content == missing.content
    assert orjson.loads(search.content)["total"] == orjson.loads(nobody.content)["total"] == 0
    assert "entry" not in orjson.loads(search.content)
