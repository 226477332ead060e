"""Categories qualified by type: "Observation:system|code" narrows Observations only.

One grant says "lab results and medications": laboratory Observations and every MedicationRequest,
through the gate's reads, searches and writes alike; an unqualified category still narrows every type.
"""

from __future__ import annotations

import orjson
import pytest
from fhir.resources.R4B.consent import Consent

from consent.categories import categories_for
from consent.fhir import grant_as_consent
from consent.gate import Caller, resource_read, resource_search
from consent.services import InvalidGrant
from consent.writes import record_write
from healthledger.errors import ResourceNotFound
from records.fhir import index_terms
from records.models import Resource

pytestmark = pytest.mark.django_db

OBS = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"{OBS}|laboratory"
VITAL = f"{OBS}|vital-signs"
LABS_ONLY = f"Observation:{LAB}"


def _everything(record, resource_type: str):  # type: ignore[no-untyped-def]
    page = resource_search(caller=Caller(actor=record.user), patient=record, resource_type=resource_type, limit=1000)
    return list(zip(page.references, page.bodies, strict=True))


def _id_in(record, resource_type: str, category: str) -> str:  # type: ignore[no-untyped-def]
    return next(
        ref.split("/")[1]
        for ref, body in _everything(record, resource_type)
        if category in index_terms(orjson.loads(body)).categories
    )


def _read(caller: Caller, record, resource_type: str, resource_id: str) -> bytes:  # type: ignore[no-untyped-def]
    return resource_read(caller=caller, patient=record, resource_type=resource_type, resource_id=resource_id)


def test_the_helper_applies_unqualified_entries_to_every_type_and_qualified_ones_to_theirs() -> None:
    assert categories_for([LABS_ONLY], "Observation") == (LAB,)
    assert categories_for([LABS_ONLY], "MedicationRequest") == ()
    assert categories_for([LAB], "MedicationRequest") == (LAB,)
    assert categories_for([VITAL, LABS_ONLY, f"Condition:{OBS}|x"], "Observation") == (VITAL, LAB)
    assert categories_for([], "Observation") == ()


def test_lab_results_and_medications_reads_labs_and_medications_only(issue_grant, alice_record, clinician):
    issue_grant(resource_types=["MedicationRequest", "Observation"], categories=[LABS_ONLY])
    caller = Caller(actor=clinician, purpose="TREAT")

    assert _read(caller, alice_record, "Observation", _id_in(alice_record, "Observation", LAB))
    medication = Resource.objects.filter(patient=alice_record, resource_type="MedicationRequest").first()
    assert medication is not None
    assert _read(caller, alice_record, "MedicationRequest", medication.fhir_id)
    with pytest.raises(ResourceNotFound):
        _read(caller, alice_record, "Observation", _id_in(alice_record, "Observation", VITAL))
    condition = Resource.objects.filter(patient=alice_record, resource_type="Condition").first()
    assert condition is not None
    with pytest.raises(ResourceNotFound):
        _read(caller, alice_record, "Condition", condition.fhir_id)


def test_searches_narrow_observations_to_labs_and_leave_medications_whole(issue_grant, alice_record, clinician):
    issue_grant(resource_types=["MedicationRequest", "Observation"], categories=[LABS_ONLY])
    caller = Caller(actor=clinician, purpose="TREAT")

    labs = resource_search(caller=caller, patient=alice_record, resource_type="Observation", limit=1000)
    all_obs = _everything(alice_record, "Observation")
    assert 0 < len(labs.bodies) < len(all_obs)
    assert all(LAB in index_terms(orjson.loads(b)).categories for b in labs.bodies)
    assert len(labs.bodies) == sum(LAB in index_terms(orjson.loads(b)).categories for _, b in all_obs)

    meds = resource_search(caller=caller, patient=alice_record, resource_type="MedicationRequest", limit=1000)
    assert len(meds.bodies) == len(_everything(alice_record, "MedicationRequest")) > 0


def test_an_unqualified_category_still_narrows_every_type_of_the_grant(issue_grant, alice_record, clinician):
    issue_grant(resource_types=["MedicationRequest", "Observation"], categories=[LAB])
    caller = Caller(actor=clinician, purpose="TREAT")

    labs = resource_search(caller=caller, patient=alice_record, resource_type="Observation", limit=1000)
    assert labs.bodies
    assert all(LAB in index_terms(orjson.loads(b)).categories for b in labs.bodies)
    # As before: medications carry no laboratory category, so the grant hides them all.
    meds = resource_search(caller=caller, patient=alice_record, resource_type="MedicationRequest", limit=1000)
    assert meds.bodies == []
    medication = Resource.objects.filter(patient=alice_record, resource_type="MedicationRequest").first()
    with pytest.raises(ResourceNotFound):
        _read(caller, alice_record, "MedicationRequest", medication.fhir_id)  # type: ignore[union-attr]


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


def test_a_write_under_the_grant_follows_the_same_rule(issue_grant, alice_record, clinician):
    issue_grant(resource_types=["MedicationRequest", "Observation"], actions=["read", "write"], categories=[LABS_ONLY])
    caller = Caller(actor=clinician, purpose="TREAT")
    pid = alice_record.fhir_id
    before = Resource.objects.filter(patient=alice_record).count()

    assert record_write(caller=caller, patient=alice_record, payload=orjson.dumps(_observation(pid, LAB)))
    assert record_write(caller=caller, patient=alice_record, payload=orjson.dumps(_medication(pid)))
    with pytest.raises(ResourceNotFound):
        record_write(caller=caller, patient=alice_record, payload=orjson.dumps(_observation(pid, VITAL)))
    assert Resource.objects.filter(patient=alice_record).count() == before + 2


def test_an_unqualified_grant_still_refuses_a_medication_write(issue_grant, alice_record, clinician):
    issue_grant(resource_types=["MedicationRequest", "Observation"], actions=["read", "write"], categories=[LAB])
    caller = Caller(actor=clinician, purpose="TREAT")
    with pytest.raises(ResourceNotFound):
        record_write(caller=caller, patient=alice_record, payload=orjson.dumps(_medication(alice_record.fhir_id)))
    assert record_write(
        caller=caller, patient=alice_record, payload=orjson.dumps(_observation(alice_record.fhir_id, LAB))
    )


@pytest.mark.parametrize(
    ("categories", "says"),
    [
        ([f"Condition:{LAB}"], "Condition, which is not one of the grant's resource types"),
        ([f"Nonsense:{LAB}"], "unknown FHIR resource type 'Nonsense'"),
        (["Observation:laboratory"], '"Type:system|code"'),
    ],
)
def test_a_qualified_category_outside_the_grant_is_refused_when_drafted(issue_grant, categories, says):
    with pytest.raises(InvalidGrant) as refused:
        issue_grant(resource_types=["MedicationRequest", "Observation"], categories=categories)
    assert says in str(refused.value)


def test_the_consent_resource_says_which_type_each_category_narrows(issue_grant):
    grant = issue_grant(resource_types=["MedicationRequest", "Observation"], categories=[LABS_ONLY])
    provision = grant_as_consent(grant)["provision"]

    assert "code" not in provision
    assert [c["code"] for c in provision["class"]] == ["MedicationRequest", "Observation"]
    nested = {p["class"][0]["code"]: p for p in provision["provision"]}
    assert "code" not in nested["MedicationRequest"]
    assert nested["Observation"]["code"] == [{"coding": [{"system": OBS, "code": "laboratory"}]}]
    assert {p["type"] for p in provision["provision"]} == {"permit"}
    Consent.model_validate(grant_as_consent(grant))
