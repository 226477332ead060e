"""Conditional reads: If-None-Match and If-Modified-Since answer 304 for a current copy; HEAD answers headers only."""

from __future__ import annotations

import orjson
import pytest

from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def test_if_none_match_with_the_current_version_is_304_and_another_is_200(api, patient_user, token_for, an_observation):
    token = token_for(patient_user)
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    first = api.get(url, **bearer(token))
    etag = first["ETag"]

    again = api.get(url, HTTP_IF_NONE_MATCH=etag, **bearer(token))
    assert (again.status_code, again.content, again["ETag"]) == (304, b"", etag)
    assert api.get(url, HTTP_IF_NONE_MATCH='W/"999"', **bearer(token)).status_code == 200
    assert api.get(url, HTTP_IF_NONE_MATCH="*", **bearer(token)).status_code == 304


def test_if_modified_since_is_304_unless_the_resource_changed_after(api, patient_user, token_for, an_observation):
    token = token_for(patient_user)
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    modified = api.get(url, **bearer(token))["Last-Modified"]
    assert api.get(url, HTTP_IF_MODIFIED_SINCE=modified, **bearer(token)).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert api.get(url, HTTP_IF_MODIFIED_SINCE=old, **bearer(token)).status_code == 200


def test_head_answers_the_headers_of_a_read_without_its_body(api, patient_user, token_for, an_observation):
    token = token_for(patient_user)
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    full = api.get(url, **bearer(token))
    head = api.head(url, **bearer(token))
    assert (head.status_code, head.content, head["ETag"]) == (200, b"", full["ETag"])
    assert int(head["Content-Length"]) == len(full.content)


def test_a_conditional_read_without_access_is_the_same_404_as_a_missing_resource(
    api, other_clinician, token_for, an_observation
):
    token = token_for(other_clinician)
    denied = api.get(f"/fhir/Observation/{an_observation.fhir_id}", HTTP_IF_NONE_MATCH="*", **bearer(token))
    missing = api.get("/fhir/Observation/no-such-id", HTTP_IF_NONE_MATCH="*", **bearer(token))
    assert (denied.status_code, denied.content) == (404, missing.content)
    assert orjson.loads(denied.content)["resourceType"] == "OperationOutcome"
    assert api.head(f"/fhir/Observation/{an_observation.fhir_id}", **bearer(token)).status_code == 404
