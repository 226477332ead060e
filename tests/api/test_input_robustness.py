"""No input makes the FHIR API answer 500, and every answer under /fhir is an OperationOutcome.

Each case here answered 500 once (issue 10, section 5): dates at the ends of the calendar,
an as-of date the model's lookback cannot reach back from, errors Django raises before a
view runs. Bad input is a 4xx naming what is wrong; valid input at the edges is answered.
"""

from __future__ import annotations

import orjson
import pytest
from django.test import Client

from diagnostics.models import DiagnosticJob
from records.models import Resource, ResourceVersion
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

FHIR = "application/fhir+json"
MODEL = "egfr-ckd-epi-2021"


def _outcome(response) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert response["Content-Type"].startswith("application/fhir+json"), response["Content-Type"]
    body = orjson.loads(response.content)
    assert body["resourceType"] == "OperationOutcome"
    return body  # type: ignore[no-any-return]


def _patient_id(record) -> str:  # type: ignore[no-untyped-def]
    return Resource.objects.get(patient=record, resource_type="Patient").fhir_id


def _observation(patient_id: str, **changes: object) -> dict:  # type: ignore[type-arg]
    body: dict[str, object] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2025-07-01T09:30:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    body.update(changes)
    return body


# --- Dates at the ends of the calendar ------------------------------------------------------


def test_last_updated_up_to_the_last_second_of_year_9999_finds_every_observation(
    api, patient_user, token_for, alice_record
):
    response = api.get("/fhir/Observation?_lastUpdated=le9999-12-31T23:59:59Z", **bearer(token_for(patient_user)))

    assert response.status_code == 200
    assert (
        orjson.loads(response.content)["total"]
        == Resource.objects.filter(patient=alice_record, resource_type="Observation").count()
    )


def test_last_updated_after_the_last_instant_of_the_calendar_finds_nothing(api, patient_user, token_for, alice_record):
    response = api.get("/fhir/Observation?_lastUpdated=gt9999-12-31T23:59:59Z", **bearer(token_for(patient_user)))

    assert response.status_code == 200
    assert orjson.loads(response.content)["total"] == 0


def test_a_date_before_the_first_day_of_the_calendar_finds_nothing(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)

    for query in ("date=lt0001-01-01", "date=lt0001", "_lastUpdated=lt0001-01-01"):
        response = api.get(f"/fhir/Observation?{query}", **bearer(token))
        assert response.status_code == 200, query
        assert orjson.loads(response.content)["total"] == 0, query


def test_a_date_after_the_last_day_of_the_calendar_finds_nothing(api, patient_user, token_for, alice_record):
    response = api.get("/fhir/Observation?date=gt9999-12-31", **bearer(token_for(patient_user)))

    assert response.status_code == 200
    assert orjson.loads(response.content)["total"] == 0


def test_audit_events_up_to_the_last_day_of_year_9999_are_every_entry_of_the_patient(
    api, patient_user, token_for, alice_record
):
    token = token_for(patient_user)
    api.get("/fhir/Observation", **bearer(token))

    everything = orjson.loads(api.get("/fhir/AuditEvent", **bearer(token)).content)["total"]
    response = api.get("/fhir/AuditEvent?date=le9999-12-31", **bearer(token))
    before_time = api.get("/fhir/AuditEvent?date=lt0001-01-01", **bearer(token))

    assert response.status_code == before_time.status_code == 200
    assert everything > 0
    assert orjson.loads(response.content)["total"] == everything
    assert orjson.loads(before_time.content)["total"] == 0


def test_a_year_zero_or_a_thirteenth_month_is_a_400_naming_the_parameter(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)

    for query in ("date=0000", "date=2024-13", "_lastUpdated=le2024-02-30T00:00:00Z", "date=lt2024-01-01T25:00"):
        response = api.get(f"/fhir/Observation?{query}", **bearer(token))
        assert response.status_code == 400, query
        assert _outcome(response)["issue"][0]["diagnostics"].startswith("search parameter "), query


def test_a_control_character_in_a_search_value_is_a_400(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)

    for query in ("code=http://loinc.org|8867-4%00", "_id=a%01b", "date=2024%00"):
        response = api.get(f"/fhir/Observation?{query}", **bearer(token))
        assert response.status_code == 400, query
        assert "control character" in _outcome(response)["issue"][0]["diagnostics"], query


# --- $diagnose as of a day the lookback cannot reach back from ---------------------------------


def test_diagnose_as_of_the_first_day_of_the_calendar_is_refused_before_a_job_exists(
    api, patient_user, token_for, alice_record
):
    response = api.post(
        f"/fhir/Patient/{_patient_id(alice_record)}/$diagnose?model={MODEL}&as-of=0001-01-01",
        **bearer(token_for(patient_user)),
    )

    assert response.status_code == 400
    assert "as-of" in _outcome(response)["issue"][0]["diagnostics"]
    assert not DiagnosticJob.objects.exists()


# --- Errors before or outside a view are OperationOutcomes too ---------------------------------


def test_an_unexpected_error_under_fhir_is_a_500_operation_outcome_without_details(
    settings, patient_user, token_for, alice_record, monkeypatch
):
    settings.DEBUG = False
    token = token_for(patient_user)

    def broken(**kwargs: object) -> None:
        raise RuntimeError("secret detail of a bug")

    monkeypatch.setattr("consent.gate.resource_search_counted", broken)
    response = Client(raise_request_exception=False).get("/fhir/Observation", **bearer(token))

    assert response.status_code == 500
    outcome = _outcome(response)
    assert outcome["issue"][0]["code"] == "exception"
    assert b"secret detail" not in response.content


def test_an_http404_raised_under_fhir_is_a_404_operation_outcome(patient_user, token_for, monkeypatch):
    from django.http import Http404

    def missing(*args: object, **kwargs: object) -> None:
        raise Http404("no such thing")

    monkeypatch.setattr("api.fhir.records.search.search_patient", missing)
    response = Client().get("/fhir/Observation", **bearer(token_for(patient_user)))

    assert response.status_code == 404
    assert _outcome(response)["issue"][0]["code"] == "not-found"


def test_too_many_query_parameters_under_fhir_is_a_400_operation_outcome(settings, patient_user, token_for):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    query = "&".join(f"_format=json&x{i}=1" for i in range(20))

    response = Client(raise_request_exception=False).get(
        f"/fhir/Observation?{query}", **bearer(token_for(patient_user))
    )

    assert response.status_code == 400
    assert _outcome(response)["issue"][0]["code"] in ("invalid", "too-costly")


def test_a_request_for_an_unknown_host_under_fhir_is_a_400_operation_outcome():
    response = Client(raise_request_exception=False).get("/fhir/metadata", HTTP_HOST="evil.example")

    assert response.status_code == 400
    _outcome(response)


def test_the_fhir_error_handlers_answer_operation_outcomes_and_the_portal_keeps_its_pages(rf):
    from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
    from django.http import Http404

    from api import handlers

    fhir = rf.get("/fhir/Observation")
    page = rf.get("/record/")

    assert handlers.bad_request(fhir, RequestDataTooBig("too big")).status_code == 413
    assert handlers.bad_request(fhir, SuspiciousOperation("odd")).status_code == 400
    assert handlers.permission_denied(fhir, Exception()).status_code == 403
    assert handlers.page_not_found(fhir, Http404()).status_code == 404
    assert handlers.server_error(fhir).status_code == 500
    for response in (
        handlers.bad_request(fhir, SuspiciousOperation("odd")),
        handlers.page_not_found(fhir, Http404()),
        handlers.server_error(fhir),
    ):
        _outcome(response)
    assert handlers.page_not_found(page, Http404())["Content-Type"].startswith("text/html")
    assert handlers.server_error(page)["Content-Type"].startswith("text/html")


def test_the_site_wires_the_fhir_aware_error_handlers():
    from healthledger import urls

    assert (urls.handler400, urls.handler403, urls.handler404, urls.handler500) == (
        "api.handlers.bad_request",
        "api.handlers.permission_denied",
        "api.handlers.page_not_found",
        "api.handlers.server_error",
    )


# --- What a FHIR string and a reference may hold ------------------------------------------------


@pytest.mark.parametrize("text", ["Heart\u0000rate", "Heart\u001brate", "Heart\brate", "Heart\u000crate"])
def test_a_control_character_in_a_fhir_string_is_refused_and_nothing_is_stored(
    api, patient_user, token_for, alice_record, text
):
    before = ResourceVersion.objects.count()
    body = _observation(_patient_id(alice_record))
    body["code"]["text"] = text  # type: ignore[index]

    response = api.post("/fhir/Observation", orjson.dumps(body), content_type=FHIR, **bearer(token_for(patient_user)))

    assert response.status_code == 400
    issue = _outcome(response)["issue"][0]
    assert "control character" in issue["diagnostics"]
    assert issue["expression"] == ["Observation.code.text"]
    assert ResourceVersion.objects.count() == before


def test_tab_carriage_return_and_line_feed_are_allowed_in_a_fhir_string(api, patient_user, token_for, alice_record):
    body = _observation(_patient_id(alice_record))
    body["code"]["text"] = "Heart\trate\r\nat rest"  # type: ignore[index]

    response = api.post("/fhir/Observation", orjson.dumps(body), content_type=FHIR, **bearer(token_for(patient_user)))

    assert response.status_code == 201


def test_a_control_character_in_a_transaction_bundles_full_url_is_refused(api, patient_user, token_for, alice_record):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:2b7c1f3e-0000-4000-8000-000000000001\u0000",
                "resource": _observation(_patient_id(alice_record)),
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }

    response = api.post("/fhir", orjson.dumps(bundle), content_type=FHIR, **bearer(token_for(patient_user)))

    assert response.status_code == 400
    assert "control character" in _outcome(response)["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/../../x",
        "Patient/..",
        "../Patient/1",
        "Patient/a/b",
        "Patient/",
        "NotAType/1",
        "Patient/" + "a" * 65,
        "Patient/1/_history/",
        "http://example.org/fhir/Patient/../x",
        "javascript:alert(1)",
        "urn:uuid:not-a-uuid",
        "urn:oid:1.2.x",
        " Patient/1",
        "#a b",
    ],
)
def test_a_reference_that_is_not_a_literal_fhir_reference_is_refused_as_invalid_fhir(
    api, patient_user, token_for, alice_record, reference
):
    body = _observation(_patient_id(alice_record), performer=[{"reference": reference}])

    response = api.post("/fhir/Observation", orjson.dumps(body), content_type=FHIR, **bearer(token_for(patient_user)))

    assert response.status_code == 422  # parsed, but not acceptable FHIR, as for every other validation failure
    issue = _outcome(response)["issue"][0]
    assert "reference" in issue["diagnostics"]
    assert issue["expression"] == ["Observation.performer[0].reference"]


@pytest.mark.parametrize(
    "reference",
    [
        "Practitioner/dr-carol.1",
        "Practitioner/1/_history/2",
        "https://ehr.example.org/fhir/R4/Practitioner/abc",
        "http://ehr.example.org:8080/fhir/Practitioner/abc/_history/3",
    ],
)
def test_literal_references_of_every_allowed_form_are_accepted(api, patient_user, token_for, alice_record, reference):
    body = _observation(_patient_id(alice_record), performer=[{"reference": reference}])

    response = api.post("/fhir/Observation", orjson.dumps(body), content_type=FHIR, **bearer(token_for(patient_user)))

    assert response.status_code == 201, response.content


# --- Purpose of use: one code -----------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "TREAT,ETREAT",
        "TREAT, TREAT",
        "TREAT|ETREAT",
        "http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT,http://terminology.hl7.org/CodeSystem/v3-ActReason|ETREAT",
        "http://example.org/other-system|TREAT",
        "TREAT ETREAT",
    ],
)
def test_a_purpose_of_use_header_with_more_than_one_code_or_a_foreign_system_is_a_400(
    api, clinician, token_for, issue_grant, alice_record, header
):
    issue_grant()

    response = api.get(
        f"/fhir/Observation?patient={_patient_id(alice_record)}",
        HTTP_X_PURPOSE_OF_USE=header,
        **bearer(token_for(clinician)),
    )

    assert response.status_code == 400
    assert "X-Purpose-Of-Use" in _outcome(response)["issue"][0]["diagnostics"]


def test_a_purpose_of_use_with_the_act_reason_system_is_still_accepted(
    api, clinician, token_for, issue_grant, alice_record
):
    issue_grant()

    response = api.get(
        f"/fhir/Observation?patient={_patient_id(alice_record)}",
        HTTP_X_PURPOSE_OF_USE="http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT",
        **bearer(token_for(clinician)),
    )

    assert response.status_code == 200
    assert orjson.loads(response.content)["total"] > 0


def test_a_token_request_for_two_purposes_in_one_is_refused_and_no_token_is_made(clinician):
    from oauth2_provider.models import AccessToken

    from tests.api.conftest import basic, register_app

    app, secret = register_app(clinician)

    response = Client().post(
        "/oauth/token/",
        {"grant_type": "client_credentials", "scope": "user/*.rs", "purpose_of_use": "TREAT|ETREAT"},
        HTTP_AUTHORIZATION=basic(app.client_id, secret),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert not AccessToken.objects.exists()
