"""An import names its source inside each resource it stores (meta.tag), encrypted with the rest of it."""

from __future__ import annotations

import orjson
import pytest

from consent.gate import Caller, resource_read
from records.ingest import SOURCE_TAG_SYSTEM, Source
from records.models import Resource
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db

OBSERVATION = {
    "resourceType": "Observation",
    "id": "weight-1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
    "effectiveDateTime": "2020-01-01",
    "valueQuantity": {"value": 80, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
}


def _tags(patient) -> list[list[dict[str, str]]]:  # type: ignore[no-untyped-def]
    rows = Resource.objects.filter(patient=patient, resource_type="Observation").order_by("pk")
    bodies = [
        orjson.loads(
            resource_read(
                caller=Caller(actor=patient.user), patient=patient, resource_type="Observation", resource_id=r.fhir_id
            )
        )
        for r in rows
    ]
    return [[t for t in b["meta"].get("tag", []) if t["system"] == SOURCE_TAG_SYSTEM] for b in bodies]


def test_a_labelled_import_tags_each_resource_with_its_source(patient) -> None:
    fhir_ingest(
        payload=orjson.dumps(OBSERVATION), actor="system:test", patient=patient, source=Source(label="Riverside Clinic")
    )

    assert _tags(patient) == [
        [{"system": SOURCE_TAG_SYSTEM, "code": "Riverside Clinic", "display": "Riverside Clinic"}]
    ]


def test_an_unlabelled_import_adds_no_tag_and_a_relabelled_one_keeps_one(patient) -> None:
    fhir_ingest(payload=orjson.dumps(OBSERVATION), actor="system:test", patient=patient)
    tagged = {**OBSERVATION, "meta": {"tag": [{"system": SOURCE_TAG_SYSTEM, "code": "Old", "display": "Old"}]}}
    fhir_ingest(payload=orjson.dumps(tagged), actor="system:test", patient=patient, source=Source(label="New"))

    first, second = _tags(patient)
    assert first == []
    assert [t["display"] for t in second] == ["New"]
