"""The search-parameter registry's element table agrees with the installed fhir.resources R4B models."""

from __future__ import annotations

import importlib

from records.fhir import index
from records.fhir.resource_types import RESOURCE_TYPES
from records.fhir.search_parameters import ELEMENTS, search_parameters


def _elements_read() -> set[str]:
    read = set(index.DATE_ELEMENTS) | set(index.PATIENT_ELEMENTS) | {"code", "category", "class"}
    for paths in index.MAIN_CODES.values():
        read |= {path.split(".")[0] for path in paths}
    return read


def test_the_element_table_matches_the_models_for_every_type():
    read = _elements_read()
    for resource_type in sorted(RESOURCE_TYPES):
        model = getattr(importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}"), resource_type)
        present = {field.alias or name for name, field in model.model_fields.items()} & read
        assert ELEMENTS.get(resource_type, frozenset()) == present, resource_type


def test_a_type_gets_only_the_parameters_its_elements_carry():
    assert set(search_parameters("Patient")) == {"_id", "_lastUpdated", "birthdate"}
    assert search_parameters("Encounter")["category"].expression == "Encounter.class"
    assert "date" not in search_parameters("Organization")
