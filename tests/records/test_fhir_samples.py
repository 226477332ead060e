"""Small FHIR documents shared by the FHIR intake tests, and the check that they are valid to begin with."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import orjson
import pytest

from healthledger.errors import InvalidFHIR
from records.fhir import parse_document

PATIENT_URL = "urn:uuid:7d2f1c3e-0000-4000-8000-000000000001"
LOINC = "http://loinc.org"


def patient() -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-02-29"}


def observation(**extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2020-05-17T10:00:00+02:00",
        "valueQuantity": {"value": 72, "unit": "/min"},
    }
    resource.update(extra)
    return resource


def transaction(*resources: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    """A Bundle like Synthea's: the first resource gets PATIENT_URL, the others fresh urn:uuid fullUrls."""
    entries = []
    for i, resource in enumerate(resources):
        full_url = PATIENT_URL if i == 0 else f"urn:uuid:{uuid.uuid4()}"
        entries.append(
            {
                "fullUrl": full_url,
                "resource": resource,
                "request": {"method": "POST", "url": resource.get("resourceType", "Observation")},
            }
        )
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def dumps(document: Any) -> bytes:
    return orjson.dumps(document)


def problems(document: Any) -> list[tuple[str, tuple[str, ...]]]:
    """(code, expression) of every issue parse_document reports; fails the test if it accepts the document."""
    payload = document if isinstance(document, bytes) else dumps(document)
    with pytest.raises(InvalidFHIR) as caught:
        parse_document(payload)
    return [(issue.code, issue.expression) for issue in caught.value.issues]


def deep(document: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(document)


def test_the_sample_documents_are_accepted_as_they_are() -> None:
    document = parse_document(dumps(transaction(patient(), observation())))

    assert [(e.resource_type, e.method) for e in document.entries] == [("Patient", "POST"), ("Observation", "POST")]
    assert parse_document(dumps(observation(subject={"reference": "Patient/p1"}))).kind == "resource"
