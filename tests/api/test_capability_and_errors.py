"""What the server says it supports, the JSON API and its docs, and the error rules (401, 503, never 500)."""

from __future__ import annotations

import orjson
import pytest
from django.db import OperationalError
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from api.fhir.records import supported_parameters
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def test_metadata_is_a_valid_capability_statement_that_names_what_is_supported(api):
    response = api.get("/fhir/metadata")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json; charset=utf-8"
    statement = orjson.loads(response.content)
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.3.0"
    rest = statement["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    observation = by_type["Observation"]
    assert [i["code"] for i in observation["interaction"]] == [
        "read",
        "vread",
        "history-instance",
        "search-type",
        "create",
        "update",
        "patch",
    ]
    # Modifiers (code:text) are the SearchParameter definitions' own, not names of their own.
    declared = {name for name in supported_parameters("Observation") if ":" not in name}
    assert {p["name"] for p in observation["searchParam"]} == declared - {"_sort"}
    assert [i["code"] for i in by_type["Consent"]["interaction"]] == ["read", "search-type"]
    assert "create" not in [i["code"] for i in by_type["Patient"]["interaction"]]
    oauth = {e["url"]: e["valueUri"] for e in rest["security"]["extension"][0]["extension"]}
    assert oauth["token"] == "http://testserver/oauth/token/"
    assert oauth["authorize"] == "http://testserver/oauth/authorize/"
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_smart_configuration_names_the_endpoints_and_pkce(api):
    config = api.get("/fhir/.well-known/smart-configuration").json()

    assert config["token_endpoint"] == "http://testserver/oauth/token/"
    assert config["code_challenge_methods_supported"] == ["S256"]


def test_unknown_fhir_paths_and_types_are_operation_outcome_404s(api, patient_user, token_for):
    token = token_for(patient_user)

    for url in ("/fhir/Observation/1/2/3", "/fhir/NotAType/1", "/fhir/NotAType"):
        response = api.get(url, **bearer(token))
        assert response.status_code == 404, url
        assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"


def test_a_database_outage_is_503_with_retry_after(api, patient_user, token_for, an_observation, monkeypatch):
    token = token_for(patient_user)

    def down(**kwargs: object) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr("consent.gate.reads.stored_version_locate", down)
    response = api.get(f"/fhir/Observation/{an_observation.fhir_id}", **bearer(token))

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert orjson.loads(response.content)["issue"][0]["code"] == "transient"


def test_introspection_describes_ones_own_token_only(api, clinician, other_clinician, token_for):
    mine = token_for(clinician, scope="user/Observation.rs fhirUser", purpose="TREAT")
    theirs = token_for(other_clinician)

    own = api.post("/api/token/introspect", {"token": mine}, content_type="application/json", **bearer(mine))
    other = api.post("/api/token/introspect", {"token": theirs}, content_type="application/json", **bearer(mine))
    anonymous = api.post("/api/token/introspect", {"token": mine}, content_type="application/json")

    assert own.status_code == 200
    described = own.json()
    assert (described["active"], described["scope"], described["purpose_of_use"]) == (
        True,
        "user/Observation.rs fhirUser",
        "TREAT",
    )
    assert described["grant_type"] == "client_credentials"
    assert other.json() == {"active": False}
    assert anonymous.status_code == 401


def test_introspection_answers_malformed_and_oversized_bodies(api, settings, clinician, token_for):
    token = token_for(clinician)

    malformed = api.post("/api/token/introspect", b'{"token": ', content_type="application/json", **bearer(token))
    wrong_shape = api.post("/api/token/introspect", b"[]", content_type="application/json", **bearer(token))
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    oversized = api.post(
        "/api/token/introspect", {"token": "x" * 4000}, content_type="application/json", **bearer(token)
    )

    assert (malformed.status_code, wrong_shape.status_code, oversized.status_code) == (400, 400, 413)


def test_the_openapi_schema_and_its_docs_page_are_served_without_a_cdn(api):
    schema = api.get("/api/schema/?format=json")
    docs = api.get("/api/docs/")
    script = api.get("/api/docs/?script=")

    assert schema.status_code == 200
    assert "/api/token/introspect" in orjson.loads(schema.content)["paths"]
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower()
    assert "unpkg" not in html.lower()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert script.status_code == 200
