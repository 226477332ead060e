"""Importing a FHIR file into one's own record: Bundles, single resources, ndjson; rejections in plain words."""

from __future__ import annotations

import json

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AccessLogEntry
from records.models import Resource

pytestmark = pytest.mark.django_db


def _upload(client, name: str, content: bytes, *, htmx: bool = True):  # type: ignore[no-untyped-def]
    extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post("/record/import/", {"file": SimpleUploadedFile(name, content)}, **extra)


def test_a_synthea_bundle_is_imported_into_alices_record(alice, patient, synthea_files) -> None:
    bundle = synthea_files[1].read_bytes()
    entries = len(json.loads(bundle)["entry"])

    response = _upload(alice, synthea_files[1].name, bundle)

    body = response.content.decode()
    assert response.status_code == 200
    assert f"{entries} new, 0 updated, 0 already there" in body
    assert Resource.objects.filter(patient=patient).count() == entries
    assert AccessLogEntry.objects.get(action="records.write").actor == f"user:{patient.user_id}"


def test_importing_the_same_file_again_changes_nothing(alice, patient, synthea_files) -> None:
    bundle = synthea_files[1].read_bytes()
    _upload(alice, "a.json", bundle)

    body = _upload(alice, "a.json", bundle).content.decode()

    assert "0 new, 0 updated" in body


def test_a_rejected_file_lists_each_problem_in_plain_words_and_stores_nothing(alice, patient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "ok"}},
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}},
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {"resourceType": "Condition", "subject": {"reference": "Patient/p"}, "colour": "red"},
                "request": {"method": "POST", "url": "Condition"},
            },
        ],
    }

    response = _upload(alice, "bad.json", orjson.dumps(bundle))

    body = response.content.decode()
    assert response.status_code == 400
    assert "bad.json was not imported." in body
    assert "Entry 2 (Observation), field status: Code is outside the REQUIRED value set observation-status" in body
    assert "Entry 3 (Condition), field colour: Unknown element: not defined for this type in FHIR R4B." in body
    assert Resource.objects.filter(patient=patient).count() == 0


def test_a_file_that_is_not_json_is_rejected_with_where_it_breaks(alice, patient) -> None:
    body = _upload(alice, "notes.json", b"{ this is not json").content.decode()

    assert "The file: The body is not valid JSON (line 1, column 3)." in body


def test_an_ndjson_file_is_imported_one_resource_per_line(alice, patient) -> None:
    lines = [
        {
            "resourceType": "Observation",
            "id": "w1",
            "status": "final",
            "code": {"text": "Body weight"},
            "effectiveDateTime": "2024-01-02",
            "valueQuantity": {"value": 70.5, "unit": "kg"},
        },
        {
            "resourceType": "Condition",
            "id": "c1",
            "code": {"text": "Hay fever"},
            "subject": {"reference": "Patient/whoever"},
        },
    ]
    payload = b"\n".join(orjson.dumps(line) for line in lines) + b"\n"

    response = _upload(alice, "export.ndjson", payload)

    assert "2 new, 0 updated" in response.content.decode()
    assert sorted(Resource.objects.filter(patient=patient).values_list("resource_type", flat=True)) == [
        "Condition",
        "Observation",
    ]


def test_an_ndjson_problem_names_its_line(alice, patient) -> None:
    payload = b'{"resourceType":"Observation","id":"a","status":"final","code":{"text":"x"}}\n\n' + (
        b'{"resourceType":"Observation","id":"b","status":"nope","code":{"text":"y"}}\nnot json\n'
    )

    body = _upload(alice, "export.ndjson", payload).content.decode()

    assert "Line 4: this line is not valid JSON." in body
    payload = payload.replace(b"not json\n", b"")
    body = _upload(alice, "export.ndjson", payload).content.decode()
    assert "Line 3 (Observation), field status: Code is outside the REQUIRED value set" in body


def test_an_ndjson_line_keeps_its_decimals_and_one_naming_a_property_twice_is_refused(alice, patient) -> None:
    weight = b'{"resourceType":"Observation","id":"w1","status":"final","code":{"text":"Body weight"},'
    weight += b'"effectiveDateTime":"2024-01-02","valueQuantity":{"value":70.50,"unit":"kg"}}'
    twice = b'{"resourceType":"Observation","id":"w2","status":"final","status":"final","code":{"text":"x"}}'

    refused = _upload(alice, "export.ndjson", weight + b"\n" + twice + b"\n").content.decode()
    assert "Line 2: The property &#x27;status&#x27; appears twice in one object." in refused
    assert not Resource.objects.filter(patient=patient).exists()

    assert "1 new, 0 updated" in _upload(alice, "export.ndjson", weight + b"\n").content.decode()
    stored = Resource.objects.get(patient=patient, resource_type="Observation")
    page = alice.get(f"/record/Observation/{stored.fhir_id}/")
    assert page.status_code == 200
    assert "70.50" in page.content.decode()  # the FHIR JSON shown is the one stored, digit for digit


def test_a_file_over_the_limit_is_refused_with_413(alice, patient, settings) -> None:
    settings.FHIR_MAX_DOCUMENT_BYTES = 2048

    response = _upload(alice, "big.json", b"{" + b" " * 4096 + b"}")

    assert response.status_code == 413
    assert "The document is larger than 2048 bytes." in response.content.decode()


def test_without_javascript_the_result_comes_as_a_whole_page(alice, patient) -> None:
    response = _upload(alice, "notes.json", b"[]", htmx=False)

    body = response.content.decode()
    assert "<html" in body
    assert "notes.json was not imported." in body


def test_a_second_providers_export_and_the_portals_own_export_both_import(alice, patient, synthea_files) -> None:
    first, second = synthea_files[1].read_bytes(), synthea_files[2].read_bytes()
    entries = len(json.loads(first)["entry"]) + len(json.loads(second)["entry"])
    _upload(alice, "clinic-a.json", first)

    added = _upload(alice, "clinic-b.json", second)

    assert added.status_code == 200
    assert f"{len(json.loads(second)['entry'])} new" in added.content.decode()
    assert Resource.objects.filter(patient=patient).count() == entries
    assert Resource.objects.filter(patient=patient, resource_type="Patient").count() == 2
    export = alice.get("/record/export/")
    assert json.loads(export.content)["type"] == "collection"
    again = _upload(alice, "my-export.json", export.content)
    assert again.status_code == 200
    assert f"0 new, 0 updated, {entries} already there" in again.content.decode()
