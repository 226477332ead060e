"""_include and _revinclude: references followed within the record, each target type through the gate."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AccessLogEntry
from records.models import Resource
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def _bundle(api, token: str, query: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    response = api.get(f"/fhir/{query}", **bearer(token))
    assert response.status_code == 200, response.content
    return orjson.loads(response.content)


def _by_mode(bundle: dict, mode: str) -> list[dict]:  # type: ignore[type-arg]
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def _patient_id(record) -> str:  # type: ignore[no-untyped-def]
    return Resource.objects.get(patient=record, resource_type="Patient").fhir_id


def test_include_adds_the_encounters_and_patient_the_page_refers_to(
    api, clinician, token_for, issue_grant, alice_record
):
    issue_grant(resource_types=["Observation", "Encounter", "Patient"])
    token = token_for(clinician)
    pid = _patient_id(alice_record)

    bundle = _bundle(
        api, token, f"Observation?patient={pid}&_count=5&_include=Observation:encounter&_include=Observation:patient"
    )

    matches, included = _by_mode(bundle, "match"), _by_mode(bundle, "include")
    wanted = {o["encounter"]["reference"] for o in matches if "encounter" in o} | {f"Patient/{pid}"}
    assert {f"{r['resourceType']}/{r['id']}" for r in included} == wanted
    assert len(wanted) > 1
    searches = AccessLogEntry.objects.filter(action="records.search", actor=f"user:{clinician.pk}")
    assert searches.count() == 3  # the page, then Encounter and Patient, each its own gated search


def test_include_leaves_out_a_type_the_grant_does_not_cover(api, clinician, token_for, issue_grant, alice_record):
    issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    pid = _patient_id(alice_record)
    bundle = _bundle(api, token, f"Observation?patient={pid}&_count=5&_include=Observation:encounter")
    assert len(_by_mode(bundle, "match")) == 5
    assert _by_mode(bundle, "include") == []


def test_observations_are_found_by_their_encounter(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    first = _by_mode(_bundle(api, token, "Observation?_count=1"), "match")[0]
    encounter = first["encounter"]["reference"]
    found = _by_mode(_bundle(api, token, f"Observation?encounter={encounter}&_count=1000"), "match")
    assert first["id"] in {o["id"] for o in found}
    assert {o["encounter"]["reference"] for o in found} == {encounter}
    by_id = _by_mode(_bundle(api, token, f"Observation?encounter={encounter.split('/')[1]}&_count=1000"), "match")
    assert [o["id"] for o in by_id] == [o["id"] for o in found]


@pytest.mark.parametrize(
    "query", ["_include=Observation:code", "_include=Encounter:patient", "_revinclude=Observation:patient"]
)
def test_an_include_that_is_not_a_reference_parameter_is_a_400(api, patient_user, token_for, alice_record, query):
    response = api.get(f"/fhir/Observation?{query}", **bearer(token_for(patient_user)))
    assert response.status_code == 400
    assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"
