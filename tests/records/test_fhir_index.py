"""index_terms and patient_compartment: search terms and record ownership, from real Synthea resources."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from records.fhir import Document, index_terms, parse_document, patient_compartment
from tests.records.test_fhir_samples import PATIENT_URL, dumps, observation, patient, transaction

LOINC = "http://loinc.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SYNTHEA_PATIENT = "urn:uuid:068973f7-ee9f-48ef-b4ec-fb6092b14302"


@pytest.fixture
def synthea(synthea_files: list[Path]) -> Document:
    path = synthea_files[0]
    assert path.name == "068973f7-ee9f-48ef-b4ec-fb6092b14302.json"
    return parse_document(path.read_bytes())


def first(document: Document, resource_type: str, code: str | None = None) -> dict[str, Any]:
    for entry in document.entries:
        resource = entry.resource
        if resource["resourceType"] == resource_type and (
            code is None or resource["code"]["coding"][0]["code"] == code
        ):
            return resource
    raise AssertionError(f"no {resource_type} {code}")


def test_a_blood_pressure_panel_is_indexed_by_its_component_codes(synthea: Document) -> None:
    terms = index_terms(first(synthea, "Observation", "55284-4"))

    assert terms.codes == {f"{LOINC}|55284-4", f"{LOINC}|8462-4", f"{LOINC}|8480-6"}
    assert terms.categories == {f"{OBSERVATION_CATEGORY}|vital-signs"}
    assert terms.patient_refs == {SYNTHEA_PATIENT}
    assert terms.dates == [datetime.date(1996, 11, 20)]


def test_a_lab_observation_carries_the_laboratory_category(synthea: Document) -> None:
    terms = index_terms(first(synthea, "Observation", "2093-3"))

    assert terms.codes == {f"{LOINC}|2093-3"}
    assert terms.categories == {f"{OBSERVATION_CATEGORY}|laboratory"}
    assert terms.dates == [datetime.date(1998, 12, 2)]


def test_an_encounter_is_indexed_by_its_type_and_class(synthea: Document) -> None:
    terms = index_terms(first(synthea, "Encounter"))

    assert terms.codes == {"http://snomed.info/sct|185349003"}
    assert terms.categories == {"http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB"}
    assert terms.dates == [datetime.date(1967, 1, 11)]


def test_a_condition_has_its_onset_date_first(synthea: Document) -> None:
    terms = index_terms(first(synthea, "Condition"))

    assert terms.codes == {"http://snomed.info/sct|162864005"}
    assert terms.dates[0] == datetime.date(1967, 1, 11)
    assert terms.patient_refs == {SYNTHEA_PATIENT}


def test_an_immunization_is_indexed_by_its_vaccine_and_patient(synthea: Document) -> None:
    terms = index_terms(first(synthea, "Immunization"))

    assert terms.codes == {"http://hl7.org/fhir/sid/cvx|140"}
    assert terms.patient_refs == {SYNTHEA_PATIENT}
    assert terms.dates == [datetime.date(1996, 11, 20)]


def test_a_medication_request_is_indexed_by_its_medication(synthea: Document) -> None:
    terms = index_terms(first(synthea, "MedicationRequest"))

    assert terms.codes == {"http://www.nlm.nih.gov/research/umls/rxnorm|849574"}
    assert terms.dates == [datetime.date(1978, 12, 18)]


def test_a_claim_is_about_its_patient_from_its_billable_period(synthea: Document) -> None:
    terms = index_terms(first(synthea, "Claim"))

    assert terms.codes == {"http://terminology.hl7.org/CodeSystem/claim-type|institutional"}
    assert terms.patient_refs == {SYNTHEA_PATIENT}
    assert terms.dates == [datetime.date(1967, 1, 11)]


def test_an_imaging_study_is_indexed_by_its_series_modality(synthea: Document) -> None:
    terms = index_terms(first(synthea, "ImagingStudy"))

    assert terms.codes == {"http://dicom.nema.org/resources/ontology/DCM|US"}
    assert terms.dates == [datetime.date(2006, 1, 20)]


def test_a_patient_is_about_itself_and_dated_by_birth(synthea: Document) -> None:
    terms = index_terms(first(synthea, "Patient"))

    assert terms.patient_refs == {"Patient/068973f7-ee9f-48ef-b4ec-fb6092b14302"}
    assert terms.codes == frozenset()
    assert terms.dates == [datetime.date(1924, 12, 30)]


def test_an_allergy_category_code_gets_its_code_system() -> None:
    allergy = {"resourceType": "AllergyIntolerance", "category": ["food"], "patient": {"reference": "Patient/p1"}}

    assert index_terms(allergy).categories == {"http://hl7.org/fhir/allergy-intolerance-category|food"}


def test_a_coding_without_system_is_an_empty_system_token_and_partial_dates_count_from_their_start() -> None:
    resource = observation(
        code={"coding": [{"code": "local-1"}]}, effectiveDateTime="2019-07", issued="2019-07-02T23:30:00-05:00"
    )

    terms = index_terms(resource)

    assert terms.codes == {"|local-1"}
    assert terms.dates == [datetime.date(2019, 7, 1), datetime.date(2019, 7, 2)]


def test_a_subject_that_is_not_a_patient_is_not_a_patient_reference() -> None:
    assert index_terms(observation(subject={"reference": "Group/g1"})).patient_refs == frozenset()
    absolute = observation(subject={"reference": "https://fhir.example.org/r4/Patient/p9/_history/2"})
    assert index_terms(absolute).patient_refs == {"Patient/p9"}


def test_every_synthea_entry_belongs_to_the_bundles_patient(synthea: Document) -> None:
    compartments = patient_compartment(synthea)

    assert compartments == {entry.index: SYNTHEA_PATIENT for entry in synthea.entries}


def test_entries_follow_their_own_patient_in_a_two_patient_bundle() -> None:
    second = {"resourceType": "Patient", "id": "p2"}
    organization = {"resourceType": "Organization", "name": "Clinic"}
    bundle = transaction(patient(), second, observation(subject={"reference": "Patient/p2"}), organization)
    second_url = bundle["entry"][1]["fullUrl"]
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:7d2f1c3e-0000-4000-8000-0000000000c1",
            "resource": {**observation(), "subject": {"reference": second_url}},
            "request": {"method": "POST", "url": "Observation"},
        }
    )

    compartments = patient_compartment(parse_document(dumps(bundle)))

    assert compartments == {0: PATIENT_URL, 1: second_url, 2: second_url, 3: PATIENT_URL, 4: second_url}


def test_a_reference_to_a_patient_outside_the_document_is_passed_on() -> None:
    document = parse_document(dumps(transaction(patient(), observation(subject={"reference": "Patient/elsewhere"}))))

    assert patient_compartment(document) == {0: PATIENT_URL, 1: "Patient/elsewhere"}


def test_a_document_without_a_patient_gives_no_compartment_to_unreferenced_entries() -> None:
    organization = {"resourceType": "Organization", "name": "Clinic"}
    document = parse_document(dumps(transaction(organization, observation())))

    assert patient_compartment(document) == {0: None, 1: "Patient/p1"}
