"""Cache-Control: no-store on every answer that carries health or account data."""

from __future__ import annotations

import pytest
from django.test import Client

from records.models import Resource
from tests.api.conftest import bearer
from tests.portal.conftest import signed_in

pytestmark = pytest.mark.django_db


def test_a_fhir_read_is_never_stored_by_a_cache(
    clinician, token_for, issue_grant, alice_record, an_observation
) -> None:
    issue_grant()
    token = token_for(clinician)
    pid = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id

    read = Client().get(f"/fhir/Observation/{an_observation.fhir_id}", **bearer(token))
    search = Client().get(f"/fhir/Observation?patient={pid}", **bearer(token))
    denied = Client().get("/fhir/Observation/nope", **bearer(token))

    assert [r.status_code for r in (read, search, denied)] == [200, 200, 404]
    assert [r["Cache-Control"] for r in (read, search, denied)] == ["no-store"] * 3


def test_every_page_of_a_signed_in_patient_is_never_stored(patient_user, alice_record, an_observation) -> None:
    alice = signed_in(patient_user)

    for url in ("/dashboard/", "/record/", f"/record/Observation/{an_observation.fhir_id}/", "/access/"):
        response = alice.get(url)
        assert response.status_code == 200, url
        assert "no-store" in response["Cache-Control"], url


def test_the_json_api_and_the_admin_are_never_stored(clinician, token_for) -> None:
    token = token_for(clinician)

    introspect = Client().post("/api/token/introspect", {"token": token}, **bearer(token))
    admin = Client().get("/admin/login/")

    assert introspect.status_code == 200
    assert introspect["Cache-Control"] == "no-store"
    assert "no-store" in admin["Cache-Control"]
