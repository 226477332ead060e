"""HTTP under /fhir: every 4xx and 5xx is an OperationOutcome; HEAD answers as GET without a body; conditional reads."""

from __future__ import annotations

import orjson
import pytest
from django.test import Client
from django.utils.http import http_date

from records.models import Resource
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def _outcome(response) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert response["Content-Type"].startswith("application/fhir+json"), response["Content-Type"]
    body = orjson.loads(response.content)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] in ("error", "fatal")
    return body  # type: ignore[no-any-return]


def test_every_error_under_fhir_is_an_operation_outcome(api, settings, patient_user, token_for, an_observation):
    token = token_for(patient_user)
    narrow = token_for(patient_user, scope="user/Condition.rs")
    oid = an_observation.fhir_id
    settings.FHIR_MAX_DOCUMENT_BYTES = 1000
    cases = [
        (api.get(f"/fhir/Observation/{oid}"), 401),
        (api.get(f"/fhir/Observation/{oid}", HTTP_AUTHORIZATION="Bearer nonsense"), 401),
        (api.get("/fhir/Observation", **bearer(narrow)), 403),
        (api.get("/fhir/Observation/no-such-id", **bearer(token)), 404),
        (api.get("/fhir/NoSuchType/1", **bearer(token)), 404),
        (api.get("/fhir/Observation/a/b/c/d", **bearer(token)), 404),
        (api.delete(f"/fhir/Observation/{oid}", **bearer(token)), 405),
        (api.put("/fhir/Observation", data=b"{}", content_type="application/fhir+json", **bearer(token)), 405),
        (api.get("/fhir/Observation?_count=many", **bearer(token)), 400),
        (api.get("/fhir/Observation?date=yesterday", **bearer(token)), 400),
        (api.get("/fhir/Observation?_format=xml", **bearer(token)), 406),
        (api.post("/fhir/Observation", data=b"<x/>", content_type="application/xml", **bearer(token)), 415),
        (
            api.post(
                "/fhir/Observation",
                data=b"{" + b" " * 2000 + b"}",
                content_type="application/fhir+json",
                **bearer(token),
            ),
            413,
        ),
        (api.get(f"/fhir/Observation/{oid}", HTTP_IF_NONE_MATCH='W/"1"', **bearer(narrow)), 403),
    ]
    for response, status in cases:
        assert response.status_code == status, (status, response.content)
        _outcome(response)


def test_an_unexpected_failure_is_a_500_operation_outcome_that_says_nothing_inside(
    patient_user, token_for, an_observation, monkeypatch
):
    from api.fhir.records import search as fhir_search

    token = token_for(patient_user)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret detail: patient 1234")

    monkeypatch.setattr(fhir_search.gate, "resource_search_counted", broken)
    client = Client(raise_request_exception=False)
    response = client.get("/fhir/Observation", **bearer(token))
    assert response.status_code == 500
    body = _outcome(response)
    assert b"secret detail" not in response.content
    assert body["issue"][0]["code"] in ("exception", "transient")


def test_head_answers_a_read_and_a_search_as_get_without_a_body(api, patient_user, token_for, an_observation):
    token = token_for(patient_user)
    oid = an_observation.fhir_id
    read, head = (
        api.get(f"/fhir/Observation/{oid}", **bearer(token)),
        api.head(f"/fhir/Observation/{oid}", **bearer(token)),
    )
    assert (head.status_code, head.content, head["ETag"]) == (200, b"", read["ETag"])
    assert head["Content-Length"] == str(len(read.content))
    search = api.get(f"/fhir/Observation?_id={oid}", **bearer(token))
    searched = api.head(f"/fhir/Observation?_id={oid}", **bearer(token))
    assert (searched.status_code, searched.content) == (200, b"")
    assert searched["Content-Length"] == str(len(search.content))


def test_conditional_reads_answer_304_for_a_current_copy_and_the_resource_otherwise(
    api, patient_user, token_for, an_observation
):
    token = token_for(patient_user)
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    read = api.get(url, **bearer(token))
    current = read["ETag"]
    assert api.get(url, HTTP_IF_NONE_MATCH=current, **bearer(token)).status_code == 304
    assert api.get(url, HTTP_IF_NONE_MATCH='W/"99"', **bearer(token)).status_code == 200
    modified = Resource.objects.get(pk=an_observation.pk).updated_at.timestamp()
    assert api.get(url, HTTP_IF_MODIFIED_SINCE=http_date(modified + 60), **bearer(token)).status_code == 304
    assert api.get(url, HTTP_IF_MODIFIED_SINCE=http_date(modified - 3600), **bearer(token)).status_code == 200


def test_a_conditional_read_tells_a_stranger_nothing(api, other_clinician, token_for, an_observation):
    token = token_for(other_clinician)
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    missing = api.get("/fhir/Observation/no-such-id", HTTP_IF_NONE_MATCH='W/"1"', **bearer(token))
    denied = api.get(url, HTTP_IF_NONE_MATCH='W/"1"', **bearer(token))
    head = api.head(url, **bearer(token))
    assert (denied.status_code, denied.content) == (404, missing.content)
    assert head.status_code == 404
