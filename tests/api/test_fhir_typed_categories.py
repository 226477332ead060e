"""A grant of "lab results and medications" over HTTP: Observations narrowed to laboratory, medications whole.

Reads, searches, $everything and writes all apply categories qualified by type
("Observation:system|code") through the gate; an unqualified grant behaves as it always did.
"""

from __future__ import annotations

import orjson
import pytest

from records.fhir import index_terms
from records.models import Resource
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

FHIR = "application/fhir+json"
OBS = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"{OBS}|laboratory"
VITAL = f"{OBS}|vital-signs"
LABS_AND_MEDICATIONS = {"resource_types": ["MedicationRequest", "Observation"], "categories": [f"Observation:{LAB}"]}


def _search_all(api, token: str, query: str) -> list[dict]:  # type: ignore[type-arg]
    response = api.get(f"/fhir/{query}&_count=1000", **bearer(token))
    assert response.status_code == 200, response.content
    return [e["resource"] for e in orjson.loads(response.content).get("entry", [])]


def _ids(record, resource_type: str, category: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    # What the record holds, read as its owner would (through the API, for the categories the index gives).
    return [
        r.fhir_id
        for r in Resource.objects.filter(patient=record, resource_type=resource_type).order_by("pk")
        if category is None or category in _categories_of(record, r)
    ]


def _categories_of(record, resource: Resource) -> frozenset[str]:  # type: ignore[no-untyped-def]
    from consent.gate import Caller, resource_read

    body = resource_read(
        caller=Caller(actor=record.user),
        patient=record,
        resource_type=resource.resource_type,
        resource_id=resource.fhir_id,
    )
    return frozenset(index_terms(orjson.loads(body)).categories)


def test_the_clinician_reads_labs_and_medications_but_not_vital_signs_nor_conditions(
    api, clinician, token_for, issue_grant, alice_record
):
    issue_grant(**LABS_AND_MEDICATIONS)
    token = token_for(clinician)

    def status(resource_type: str, resource_id: str) -> int:
        return api.get(f"/fhir/{resource_type}/{resource_id}", **bearer(token)).status_code

    assert status("Observation", _ids(alice_record, "Observation", LAB)[0]) == 200
    assert status("MedicationRequest", _ids(alice_record, "MedicationRequest")[0]) == 200
    assert status("Observation", _ids(alice_record, "Observation", VITAL)[0]) == 404
    assert status("Condition", _ids(alice_record, "Condition")[0]) == 404


def test_searches_return_only_labs_of_observations_and_every_medication(
    api, clinician, token_for, issue_grant, alice_record
):
    issue_grant(**LABS_AND_MEDICATIONS)
    token = token_for(clinician)
    pid = alice_record.fhir_id

    observations = _search_all(api, token, f"Observation?patient={pid}")
    assert sorted(o["id"] for o in observations) == sorted(_ids(alice_record, "Observation", LAB))
    medications = _search_all(api, token, f"MedicationRequest?patient={pid}")
    assert sorted(m["id"] for m in medications) == sorted(_ids(alice_record, "MedicationRequest"))
    assert medications

    # $everything goes through the same search: no vital sign comes in by the side door.
    everything = api.get(f"/fhir/Patient/{pid}/$everything?_count=1000", **bearer(token))
    served = [e["resource"] for e in orjson.loads(everything.content).get("entry", [])]
    assert {r["resourceType"] for r in served} == {"MedicationRequest", "Observation"}
    assert sorted(r["id"] for r in served if r["resourceType"] == "Observation") == sorted(
        _ids(alice_record, "Observation", LAB)
    )


def _observation(patient_id: str, category: str) -> dict:  # type: ignore[type-arg]
    system, code = category.split("|")
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": system, "code": code}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2025-07-01T09:30:00Z",
        "valueQuantity": {"value": 95, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    }


def _medication(patient_id: str) -> dict:  # type: ignore[type-arg]
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361"}]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2025-07-01",
    }


def test_writes_under_the_grant_follow_the_same_rule(api, clinician, token_for, issue_grant, alice_record):
    issue_grant(actions=["read", "write"], **LABS_AND_MEDICATIONS)
    token = token_for(clinician)
    pid = alice_record.fhir_id

    def post(resource: dict) -> int:  # type: ignore[type-arg]
        path = f"/fhir/{resource['resourceType']}"
        return api.post(path, orjson.dumps(resource), content_type=FHIR, **bearer(token)).status_code

    assert post(_observation(pid, LAB)) == 201
    assert post(_medication(pid)) == 201
    assert post(_observation(pid, VITAL)) == 404


def test_an_unqualified_grant_still_narrows_every_type(api, clinician, token_for, issue_grant, alice_record):
    issue_grant(resource_types=["MedicationRequest", "Observation"], categories=[LAB])
    token = token_for(clinician)
    pid = alice_record.fhir_id

    assert sorted(o["id"] for o in _search_all(api, token, f"Observation?patient={pid}")) == sorted(
        _ids(alice_record, "Observation", LAB)
    )
    assert _search_all(api, token, f"MedicationRequest?patient={pid}") == []
    medication = _ids(alice_record, "MedicationRequest")[0]
    assert api.get(f"/fhir/MedicationRequest/{medication}", **bearer(token)).status_code == 404


def test_the_consent_resource_served_names_the_type_narrowed(api, patient_user, token_for, issue_grant, alice_record):
    grant = issue_grant(**LABS_AND_MEDICATIONS)
    response = api.get("/fhir/Consent", **bearer(token_for(patient_user)))
    assert response.status_code == 200, response.content
    consents = [e["resource"] for e in orjson.loads(response.content).get("entry", [])]
    provision = next(c for c in consents if {"system": "urn:healthledger:grant", "value": grant.id} in c["identifier"])[
        "provision"
    ]
    nested = {p["class"][0]["code"]: p.get("code") for p in provision["provision"]}
    assert nested == {"MedicationRequest": None, "Observation": [{"coding": [{"system": OBS, "code": "laboratory"}]}]}
