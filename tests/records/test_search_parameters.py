"""The search-parameter registry's element table agrees with the installed fhir.resources R4B models."""

from __future__ import annotations

import importlib

from records.fhir.resource_types import RESOURCE_TYPES
from records.fhir.search_parameters import ELEMENTS, elements_read, search_parameters, search_terms, term_query


def test_the_element_table_matches_the_models_for_every_type():
    read = elements_read()
    for resource_type in sorted(RESOURCE_TYPES):
        model = getattr(importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}"), resource_type)
        present = {field.alias or name for name, field in model.model_fields.items()} & read
        assert ELEMENTS.get(resource_type, frozenset()) == present, resource_type


def test_a_type_gets_only_the_parameters_its_elements_carry():
    assert set(search_parameters("Patient")) == {
        "_id",
        "_lastUpdated",
        "birthdate",
        "gender",
        "identifier",
        "name",
        "family",
        "given",
    }
    assert search_parameters("Encounter")["category"].expression == "Encounter.class"
    assert "date" not in search_parameters("Organization")


def test_a_patients_terms_are_her_gender_identifiers_and_the_prefixes_of_her_names():
    terms = search_terms(
        {
            "resourceType": "Patient",
            "gender": "female",
            "identifier": [{"system": "urn:mrn", "value": "A7"}],
            "name": [{"family": "Müller", "given": ["Ana"]}],
        }
    )
    assert {"gender=female", "identifier=urn:mrn|A7", "identifier=A7", "family=mul", "given=ana", "name=a"} <= terms
    assert "family=ana" not in terms


def test_a_query_value_asks_for_the_terms_the_index_holds():
    patient = search_parameters("Patient")
    assert term_query(patient["name"], "Mül Ana") == (("name=mul",), ("name=ana",))
    assert term_query(search_parameters("Observation")["status"], "final,http://x|amended") == (
        ("status=final", "status=amended"),
    )
    assert term_query(patient["identifier"], "urn:mrn|A7") == (("identifier=urn:mrn|A7",),)
