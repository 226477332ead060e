"""rewrite_references and canonical_json: what the store encrypts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from healthledger.errors import InvalidFHIR
from records.fhir import canonical_json, parse_document, rewrite_references
from tests.records.test_fhir_samples import PATIENT_URL, observation

ENCOUNTER_URL = "urn:uuid:7d2f1c3e-0000-4000-8000-0000000000e1"
MAPPING = {PATIENT_URL: "Patient/server-p", ENCOUNTER_URL: "Encounter/server-e"}


def test_references_at_every_depth_are_rewritten() -> None:
    resource = observation(
        subject={"reference": PATIENT_URL, "display": "the patient"},
        encounter={"reference": ENCOUNTER_URL},
        basedOn=[{"reference": "ServiceRequest/kept"}],
        hasMember=[{"reference": ENCOUNTER_URL}],
        extension=[{"url": "http://example.org/ext", "valueReference": {"reference": PATIENT_URL}}],
        contained=[
            {
                "resourceType": "Provenance",
                "id": "prov",
                "recorded": "2020-01-01T00:00:00Z",
                "target": [{"reference": ENCOUNTER_URL}],
                "agent": [{"who": {"reference": PATIENT_URL}}],
            }
        ],
    )

    rewritten = rewrite_references(resource, MAPPING)

    assert rewritten["subject"] == {"reference": "Patient/server-p", "display": "the patient"}
    assert rewritten["encounter"] == {"reference": "Encounter/server-e"}
    assert rewritten["basedOn"] == [{"reference": "ServiceRequest/kept"}]
    assert rewritten["hasMember"] == [{"reference": "Encounter/server-e"}]
    assert rewritten["extension"][0]["valueReference"] == {"reference": "Patient/server-p"}
    assert rewritten["contained"][0]["target"] == [{"reference": "Encounter/server-e"}]
    assert rewritten["contained"][0]["agent"] == [{"who": {"reference": "Patient/server-p"}}]


def test_rewriting_leaves_the_input_untouched() -> None:
    resource = observation(subject={"reference": PATIENT_URL})
    before = orjson.dumps(resource)

    rewritten = rewrite_references(resource, MAPPING)

    assert orjson.dumps(resource) == before
    assert rewritten["subject"]["reference"] == "Patient/server-p"
    assert rewritten["code"] is resource["code"]  # untouched parts are shared, not copied


def test_a_resource_with_nothing_to_rewrite_comes_back_as_itself() -> None:
    resource = observation(subject={"reference": "Patient/p1"})

    assert rewrite_references(resource, MAPPING) is resource


def test_an_unresolved_urn_uuid_reference_raises_invalid_fhir_naming_each_place() -> None:
    missing = "urn:uuid:7d2f1c3e-0000-4000-8000-00000000dead"
    resource = observation(subject={"reference": PATIENT_URL}, focus=[{"reference": missing}, {"reference": missing}])

    with pytest.raises(InvalidFHIR) as caught:
        rewrite_references(resource, MAPPING)

    assert [(i.code, i.expression) for i in caught.value.issues] == [
        ("invalid", ("Observation.focus[0].reference",)),
        ("invalid", ("Observation.focus[1].reference",)),
    ]
    assert missing not in str(caught.value)


def test_synthea_references_all_resolve_against_their_own_bundle(synthea_files: list[Path]) -> None:
    document = parse_document(synthea_files[1].read_bytes())
    mapping = {e.full_url: f"{e.resource_type}/server-{e.index}" for e in document.entries if e.full_url}

    rewritten = [canonical_json(rewrite_references(e.resource, mapping)) for e in document.entries]

    assert not any(b"urn:uuid:" in body for body in rewritten)
    patient_entry = next(e for e in document.entries if e.resource_type == "Patient")
    first_observation = orjson.loads(
        rewritten[next(e.index for e in document.entries if e.resource_type == "Observation")]
    )
    assert first_observation["subject"] == {"reference": f"Patient/server-{patient_entry.index}"}


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "pulse", "coding": []}}

    assert (
        canonical_json(resource)
        == b'{"code":{"coding":[],"text":"pulse"},"resourceType":"Observation","status":"final"}'
    )


def test_canonical_json_is_the_same_whatever_the_key_order_sent() -> None:
    sent = (
        b'{"status":"final","resourceType":"Observation",'
        b'"code":{"text":"\\u00e9t\\u00e9", "coding":[{"code":"a","system":"s"}]}}'
    )
    resent = (
        b'{ "code": {"coding": [{"system": "s", "code": "a"}], "text": "\xc3\xa9t\xc3\xa9"},\n'
        b' "resourceType": "Observation", "status": "final" }'
    )

    first, second = canonical_json(orjson.loads(sent)), canonical_json(orjson.loads(resent))

    assert first == second
    assert canonical_json(orjson.loads(first)) == first  # a fixed point: serving stored bytes needs no re-encoding
