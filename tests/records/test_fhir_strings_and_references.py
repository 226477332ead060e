"""What a FHIR string and a reference may hold, on every write path (API, portal upload, import command).

A string holds no control character but tab, CR and LF; a reference is a literal one (Type/id,
an absolute URL ending in Type/id, urn:uuid:, urn:oid:, #id), never a path such as Patient/../../x.
"""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from healthledger.errors import InvalidFHIR
from records.fhir import parse_document
from records.fhir.validation import is_literal_reference
from tests.records.test_fhir_samples import PATIENT_URL, dumps, observation, patient, problems, transaction

CONTROLS = [chr(c) for c in range(0x20) if chr(c) not in "\t\r\n"]


def test_a_control_character_in_a_resource_string_is_refused_where_it_is() -> None:
    found = problems(observation(code={"text": "Heart\u0000rate"}, note=[{"text": "ok"}, {"text": "\u001b[31m"}]))

    assert found == [
        ("value", ("Observation.code.text",)),
        ("value", ("Observation.note[1].text",)),
    ]


def test_a_control_character_in_a_list_of_strings_is_refused_with_its_position() -> None:
    named = patient() | {"name": [{"family": "Doe", "given": ["Ann", "B\u0007"]}]}

    assert problems(named) == [("value", ("Patient.name[0].given[1]",))]


def test_a_control_character_in_a_bundles_full_url_is_refused() -> None:
    bundle = transaction(patient(), observation(subject={"reference": PATIENT_URL}))
    bundle["entry"][1]["fullUrl"] += "\u0000"

    assert ("value", ("Bundle.entry[1].fullUrl",)) in problems(bundle)


def test_tab_cr_and_lf_stay_allowed() -> None:
    document = parse_document(dumps(observation(code={"text": "Heart\trate\r\nat rest"})))

    assert document.entries[0].resource["code"]["text"] == "Heart\trate\r\nat rest"


def test_a_path_for_a_reference_is_refused_where_it_is() -> None:
    assert problems(observation(subject={"reference": "Patient/../../x"})) == [
        ("value", ("Observation.subject.reference",))
    ]


def test_the_references_synthea_writes_are_literal_references() -> None:
    for reference in (PATIENT_URL, "#coverage", "#referral", "Patient/p1", "urn:oid:2.16.840.1.113883.4.642"):
        assert is_literal_reference(reference), reference


@given(st.sampled_from(CONTROLS), st.text(max_size=20), st.text(max_size=20))
def test_any_string_with_any_control_character_is_refused(control: str, before: str, after: str) -> None:
    text = before + control + after

    found = problems(observation(code={"text": text}))

    assert ("value", ("Observation.code.text",)) in found


@given(st.text(max_size=80))
def test_any_reference_is_stored_only_when_literal_and_otherwise_refused_as_invalid_fhir(reference: str) -> None:
    try:
        parse_document(dumps(observation(performer=[{"reference": reference}])))
    except InvalidFHIR:
        return
    assert is_literal_reference(reference)


@given(
    st.text(alphabet=string.ascii_letters + string.digits + "-.", min_size=1, max_size=64).filter(
        lambda s: s not in (".", "..")
    )
)
def test_every_fhir_id_makes_a_literal_reference(resource_id: str) -> None:
    assert is_literal_reference(f"Practitioner/{resource_id}")
    assert is_literal_reference(f"Practitioner/{resource_id}/_history/1")
    assert is_literal_reference(f"https://ehr.example.org/fhir/Practitioner/{resource_id}")
