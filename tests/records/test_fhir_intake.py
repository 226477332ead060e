"""parse_document: what the write path accepts, and exactly what it says about what it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from healthledger.errors import DocumentTooLarge, InvalidFHIR
from records.fhir import parse_document
from tests.records.test_fhir_samples import (
    PATIENT_URL,
    dumps,
    observation,
    patient,
    problems,
    transaction,
)


def test_every_synthea_bundle_parses_with_no_issue(synthea_files: list[Path]) -> None:
    assert len(synthea_files) == 40
    for path in synthea_files:
        raw = path.read_bytes()
        document = parse_document(raw)

        sent = orjson.loads(raw)["entry"]
        assert document.kind == "transaction"
        assert [e.index for e in document.entries] == list(range(len(sent)))
        assert [e.full_url for e in document.entries] == [e["fullUrl"] for e in sent]
        assert [e.resource for e in document.entries] == [e["resource"] for e in sent]
        assert {e.method for e in document.entries} == {"POST"}
        assert [e.source_id for e in document.entries] == [e["resource"].get("id") for e in sent]


def test_a_single_resource_is_one_post_entry() -> None:
    resource = observation(id="obs-1")

    document = parse_document(dumps(resource))

    assert document.kind == "resource"
    assert len(document.entries) == 1
    entry = document.entries[0]
    assert (entry.index, entry.resource_type, entry.source_id, entry.full_url, entry.method) == (
        0,
        "Observation",
        "obs-1",
        None,
        "POST",
    )
    assert entry.resource == resource


def test_a_batch_bundle_is_accepted_as_a_batch() -> None:
    assert parse_document(dumps(transaction(patient(), observation(), kind="batch"))).kind == "batch"


def test_a_bundle_without_entries_is_an_empty_transaction() -> None:
    document = parse_document(dumps({"resourceType": "Bundle", "type": "transaction"}))

    assert (document.kind, document.entries) == ("transaction", [])


def test_invalid_json_is_a_structure_issue_that_says_where() -> None:
    with pytest.raises(InvalidFHIR) as caught:
        parse_document(b'{"resourceType": "Observation",\n "status": }')

    [issue] = caught.value.issues
    assert (issue.code, issue.expression) == ("structure", ())
    assert issue.diagnostics == "the body is not valid JSON (line 2, column 12)"
    assert caught.value.status == 400


def test_bytes_that_are_not_utf8_are_a_structure_issue() -> None:
    assert problems(b'{"resourceType": "Patient", "gender": "\xff"}') == [("structure", ())]


def test_a_utf8_byte_order_mark_is_tolerated() -> None:
    assert parse_document(b"\xef\xbb\xbf" + dumps(observation())).entries[0].resource == observation()


def test_a_json_array_is_not_a_document() -> None:
    assert problems(b"[{}]") == [("structure", ())]


def test_an_unknown_resource_type_is_not_supported() -> None:
    assert problems({"resourceType": "Nonsense", "status": "final"}) == [("not-supported", ("Resource.resourceType",))]


def test_a_datatype_name_is_not_a_resource_type() -> None:
    assert problems({"resourceType": "CodeableConcept", "text": "x"}) == [("not-supported", ("Resource.resourceType",))]


def test_a_missing_resource_type_is_required() -> None:
    assert problems({"status": "final"}) == [("required", ("Resource.resourceType",))]


def test_a_resource_type_that_is_not_a_string_is_a_structure_issue() -> None:
    assert problems({"resourceType": 7}) == [("structure", ("Resource.resourceType",))]


def test_an_observation_without_code_is_missing_a_required_element() -> None:
    resource = observation()
    del resource["code"]

    assert problems(resource) == [("required", ("Observation.code",))]


def test_an_observation_without_status_is_missing_a_required_element() -> None:
    resource = observation()
    del resource["status"]

    assert problems(resource) == [("required", ("Observation.status",))]


def test_a_missing_status_is_reported_even_beside_other_problems() -> None:
    # R4B alone reports a missing primitive only once everything else validates.
    resource = observation()
    del resource["status"]
    del resource["code"]

    assert sorted(problems(resource)) == [("required", ("Observation.code",)), ("required", ("Observation.status",))]


def test_an_unknown_element_is_a_structure_issue() -> None:
    assert problems(observation(colour="blue")) == [("structure", ("Observation.colour",))]


def test_an_impossible_date_is_a_value_issue() -> None:
    assert problems(observation(effectiveDateTime="2020-13-45")) == [("value", ("Observation.effectiveDateTime",))]


def test_an_impossible_birth_date_is_a_value_issue() -> None:
    assert problems({**patient(), "birthDate": "1980-02-30"}) == [("value", ("Patient.birthDate",))]


def test_a_nested_bad_value_is_located_down_to_the_element() -> None:
    resource = observation(
        component=[{"code": {"text": "a"}}, {"code": {"text": "b"}, "valueQuantity": {"value": "x"}}]
    )

    assert problems(resource) == [("value", ("Observation.component[1].valueQuantity.value",))]


def test_a_status_outside_its_value_set_is_a_value_issue() -> None:
    with pytest.raises(InvalidFHIR) as caught:
        parse_document(dumps(observation(status="nonsense")))

    [issue] = caught.value.issues
    assert (issue.code, issue.expression) == ("value", ("Observation.status",))
    assert issue.diagnostics == (
        "code is outside the REQUIRED value set observation-status "
        "(amended|cancelled|corrected|entered-in-error|final|preliminary|registered|unknown)"
    )


def test_two_value_choices_at_once_are_a_structure_issue() -> None:
    assert problems(observation(valueString="high")) == [("structure", ("Observation",))]


def test_an_id_longer_than_64_characters_is_a_value_issue() -> None:
    assert problems(observation(id="a" * 65)) == [("value", ("Observation.id",))]


def test_null_and_empty_elements_are_structure_issues() -> None:
    resource = observation(note=[], subject=None, category=[{}])

    assert sorted(problems(resource)) == [
        ("structure", ("Observation.category[0]",)),
        ("structure", ("Observation.note",)),
        ("structure", ("Observation.subject",)),
    ]


def test_one_bad_entry_among_good_ones_rejects_the_whole_bundle_and_points_at_it(synthea_files: list[Path]) -> None:
    bundle = orjson.loads(synthea_files[0].read_bytes())
    assert bundle["entry"][3]["resource"]["resourceType"] == "Encounter"
    bundle["entry"][3]["resource"]["status"] = "nonsense"

    assert problems(bundle) == [("value", ("Bundle.entry[3].resource.status",))]


def test_every_problem_of_every_entry_is_reported_at_once() -> None:
    bad_date = observation(effectiveDateTime="2020-02-30")
    unknown_element = observation(colour="blue")
    bad_status = {**patient(), "gender": "nonsense"}
    bundle = transaction(bad_status, observation(), bad_date, unknown_element)

    assert problems(bundle) == [
        ("value", ("Bundle.entry[0].resource.gender",)),
        ("value", ("Bundle.entry[2].resource.effectiveDateTime",)),
        ("structure", ("Bundle.entry[3].resource.colour",)),
    ]


def test_diagnostics_never_echo_the_values_they_reject() -> None:
    marker = "Jane-Doe-1980"
    resource = observation(status=marker, id=marker * 6, effectiveDateTime=marker, colour=marker)
    resource["code"]["text"] = 42

    with pytest.raises(InvalidFHIR) as caught:
        parse_document(dumps(transaction(patient(), resource)))

    assert len(caught.value.issues) == 5
    assert all(marker not in issue.diagnostics for issue in caught.value.issues)
    assert marker not in str(caught.value)


def test_a_document_nested_deeper_than_the_limit_is_too_costly(settings: Any) -> None:
    settings.FHIR_MAX_DEPTH = 8
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(3):  # Observation is level 1, extension[] 2, its object 3 ... the fourth object is level 9
        extension = {"url": "http://example.org/x", "extension": [extension]}
    resource = observation(extension=[extension])

    assert problems(resource) == [
        ("too-costly", ("Observation.extension[0].extension[0].extension[0].extension[0]",)),
    ]


def test_the_depth_limit_counts_from_the_bundle(settings: Any) -> None:
    settings.FHIR_MAX_DEPTH = 6  # Bundle 1, entry[] 2, entry 3, resource 4, code 5, coding[] 6, coding 7
    resource = observation(code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]})

    assert problems(transaction(patient(), resource)) == [("too-costly", ("Bundle.entry[1].resource.code.coding[0]",))]


def test_a_document_larger_than_the_limit_is_refused_with_413(settings: Any) -> None:
    settings.FHIR_MAX_DOCUMENT_BYTES = 1024
    payload = dumps(observation(note=[{"text": "x" * 2000}]))

    with pytest.raises(DocumentTooLarge) as caught:
        parse_document(payload)

    assert caught.value.status == 413
    assert [(i.code, i.expression) for i in caught.value.issues] == [("too-costly", ())]


def test_a_bundle_with_more_entries_than_the_limit_is_too_costly(settings: Any) -> None:
    settings.FHIR_MAX_BUNDLE_ENTRIES = 2

    assert problems(transaction(patient(), observation(), observation())) == [("too-costly", ("Bundle.entry",))]


def test_an_unresolved_urn_uuid_reference_is_invalid() -> None:
    resource = observation(encounter={"reference": "urn:uuid:0f0e0d0c-0000-4000-8000-00000000dead"})

    assert problems(transaction(patient(), resource)) == [
        ("invalid", ("Bundle.entry[1].resource.encounter.reference",))
    ]


def test_a_lone_resource_cannot_use_a_placeholder_reference() -> None:
    assert problems(observation(subject={"reference": PATIENT_URL})) == [
        ("invalid", ("Observation.subject.reference",))
    ]


def test_a_conditional_reference_is_not_supported() -> None:
    resource = observation(performer=[{"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1"}])

    assert problems(transaction(patient(), resource)) == [
        ("not-supported", ("Bundle.entry[1].resource.performer[0].reference",))
    ]


def test_a_collection_bundle_is_accepted_and_its_entries_may_not_carry_requests() -> None:
    assert problems(transaction(patient(), kind="collection")) == [("invalid", ("Bundle.entry[0].request",))]
    bundle = transaction(patient(), kind="collection")
    del bundle["entry"][0]["request"]
    assert [e.resource_type for e in parse_document(dumps(bundle)).entries] == ["Patient"]


def test_a_searchset_bundle_is_not_supported() -> None:
    assert problems(transaction(patient(), kind="searchset")) == [("not-supported", ("Bundle.type",))]


def test_a_bundle_without_type_is_missing_a_required_element() -> None:
    bundle = transaction(patient())
    del bundle["type"]

    assert problems(bundle) == [("required", ("Bundle.type",))]


def test_a_delete_entry_is_not_supported() -> None:
    bundle = transaction(patient())
    bundle["entry"].append({"request": {"method": "DELETE", "url": "Observation/abc"}})

    assert problems(bundle) == [("not-supported", ("Bundle.entry[1].request.method",))]


def test_an_entry_without_request_is_missing_a_required_element() -> None:
    bundle = transaction(patient(), observation())
    del bundle["entry"][1]["request"]

    assert problems(bundle) == [("required", ("Bundle.entry[1].request",))]


def test_an_unknown_element_in_an_entry_is_a_structure_issue() -> None:
    bundle = transaction(patient(), observation())
    bundle["entry"][1]["colour"] = "blue"

    assert problems(bundle) == [("structure", ("Bundle.entry[1].colour",))]


def test_a_post_entry_must_name_the_resource_type() -> None:
    bundle = transaction(patient(), observation())
    bundle["entry"][1]["request"]["url"] = "Condition"

    assert problems(bundle) == [("invalid", ("Bundle.entry[1].request.url",))]


def test_a_put_entry_updates_the_resource_its_url_names() -> None:
    bundle = transaction(patient(), observation(id="obs-1"))
    bundle["entry"][1]["request"] = {"method": "PUT", "url": "Observation/obs-1"}

    entry = parse_document(dumps(bundle)).entries[1]

    assert (entry.method, entry.source_id) == ("PUT", "obs-1")


def test_a_put_entry_whose_url_names_another_resource_is_invalid() -> None:
    bundle = transaction(patient(), observation(id="obs-1"))
    bundle["entry"][1]["request"] = {"method": "PUT", "url": "Observation/obs-2"}

    assert problems(bundle) == [("invalid", ("Bundle.entry[1].request.url",))]


def test_a_conditional_create_is_not_supported() -> None:
    bundle = transaction(patient(), observation())
    bundle["entry"][1]["request"]["ifNoneExist"] = "identifier=abc"

    assert problems(bundle) == [("not-supported", ("Bundle.entry[1].request.ifNoneExist",))]


def test_two_entries_with_the_same_full_url_are_invalid() -> None:
    bundle = transaction(patient(), observation(), observation())
    bundle["entry"][2]["fullUrl"] = bundle["entry"][1]["fullUrl"]

    assert problems(bundle) == [("invalid", ("Bundle.entry[2].fullUrl",))]


def test_a_contained_resource_of_unknown_type_is_reported_not_crashed_on() -> None:
    resource = observation(contained=[{"resourceType": "Nonsense", "id": "x"}, {"resourceType": 5}])

    assert problems(resource) == [
        ("not-supported", ("Observation.contained[0].resourceType",)),
        ("structure", ("Observation.contained[1].resourceType",)),
    ]


def test_a_contained_resource_is_held_to_its_value_sets() -> None:
    contained = {"resourceType": "Patient", "id": "pt", "gender": "nonsense"}
    resource = observation(contained=[contained], subject={"reference": "#pt"})

    assert problems(resource) == [("value", ("Observation.contained[0].gender",))]


def test_a_resource_in_place_of_the_entry_is_a_structure_issue() -> None:
    bundle = transaction(patient())
    bundle["entry"].append("Observation")

    assert problems(bundle) == [("structure", ("Bundle.entry[1]",))]
