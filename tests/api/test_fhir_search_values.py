"""Search by code (own, combo, component, :text), by value with prefixes and UCUM units, _summary and _sort
on several keys: all through blind-index tokens, and nothing for a clinician without a grant."""

from __future__ import annotations

import json

import orjson
import pytest

from records.fhir.elements import summary_elements
from records.models import Resource
from records.services import fhir_ingest
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

T = "urn:test:codes"
UCUM = "http://unitsofmeasure.org"


def _observation(code: str, display: str, day: str, **more: object) -> dict:  # type: ignore[type-arg]
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": T, "code": code, "display": display}]},
        "effectiveDateTime": day,
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">narrative</div>'},
        **more,
    }


def _quantity(value: float, code: str) -> dict:  # type: ignore[type-arg]
    return {"valueQuantity": {"value": value, "unit": code, "system": UCUM, "code": code}}


@pytest.fixture
def measured(alice_record) -> dict[str, str]:  # type: ignore[no-untyped-def,type-arg]
    """Four observations of Alice's: two glucose values in other units, a pressure panel, a weight in pounds."""
    panel = _observation(
        "bp-panel",
        "Zebra pressure panel",
        "2024-03-03",
        component=[
            {"code": {"coding": [{"system": T, "code": "bp-sys"}]}, **_quantity(120, "mm[Hg]")},
            {"code": {"coding": [{"system": T, "code": "bp-dia"}]}, **_quantity(80, "mm[Hg]")},
        ],
    )
    observations = {
        "mass": _observation("glu-mass", "Quokka glucose mass", "2024-03-01", **_quantity(97, "mg/dL")),
        "molar": _observation("glu-molar", "Quokka glucose moles", "2024-03-02", **_quantity(5.4, "mmol/L")),
        "panel": panel,
        "weight": _observation("weight", "Quokka weight", "2024-03-04", **_quantity(185, "[lb_av]")),
    }
    entries = [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}", "resource": o, "request": {"method": "POST"}}
        for n, o in enumerate(observations.values())
    ]
    for entry in entries:
        entry["request"]["url"] = "Observation"
    payload = json.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}).encode()
    created = fhir_ingest(payload=payload, actor="system:test", patient=alice_record).patients[alice_record.pk].created
    ids = [ref.split("/")[1] for ref in created]
    return dict(zip(observations, ids, strict=True))


def _patient_id(record) -> str:  # type: ignore[no-untyped-def]
    return Resource.objects.get(patient=record, resource_type="Patient").fhir_id


def _found(api, token: str, query: str, mine: dict[str, str]) -> set[str]:  # type: ignore[no-untyped-def,type-arg]
    """Which of the fixture's observations a search finds (Alice's generated data may match too)."""
    response = api.get(f"/fhir/Observation?_count=1000&{query}", **bearer(token))
    assert response.status_code == 200, response.content
    ids = {e["resource"]["id"] for e in orjson.loads(response.content).get("entry", [])}
    return {name for name, resource_id in mine.items() if resource_id in ids}


@pytest.fixture
def carol(api, clinician, token_for, issue_grant, alice_record, measured):  # type: ignore[no-untyped-def]
    issue_grant()
    token = token_for(clinician)

    def search(query: str) -> set[str]:
        return _found(api, token, f"patient={_patient_id(alice_record)}&{query}", measured)

    return search


def test_code_is_the_observations_own_combo_code_adds_its_components(carol):
    assert carol(f"code={T}|bp-sys") == set()
    assert carol("code=bp-panel") == {"panel"}
    assert carol(f"combo-code={T}|bp-sys") == {"panel"}
    assert carol("combo-code=bp-panel") == {"panel"}
    assert carol("component-code=bp-dia") == {"panel"}
    assert carol("component-code=bp-panel") == set()


def test_code_text_searches_the_words_of_the_codes_display(carol):
    assert carol("code:text=quokka") == {"mass", "molar", "weight"}
    assert carol("code:text=quok gluc") == {"mass", "molar"}
    assert carol("code:text=zebra PRESS") == {"panel"}
    assert carol("code:text=zebrafish") == set()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("97", {"mass"}),  # no unit: the number as recorded, in any unit
        ("97.0", {"mass"}),
        ("eq5.4", {"molar"}),
        ("5.4|http://unitsofmeasure.org|mmol/L", {"molar"}),
        ("5400|http://unitsofmeasure.org|umol/L", {"molar"}),  # the same amount in another unit
        ("0.0054|http://unitsofmeasure.org|mol/L", {"molar"}),
        ("gt5.4|http://unitsofmeasure.org|mmol/L", set()),
        ("ge5.4|http://unitsofmeasure.org|mmol/L", {"molar"}),
        ("lt5.4|http://unitsofmeasure.org|mmol/L", set()),
        ("sa5|http://unitsofmeasure.org|mmol/L", {"molar"}),
        ("eb6|http://unitsofmeasure.org|mmol/L", {"molar"}),
        ("lt90|http://unitsofmeasure.org|kg", {"weight"}),  # 185 [lb_av] is 83.9 kg
        ("gt84|http://unitsofmeasure.org|kg", set()),
        ("ap84||kg", {"weight"}),
        ("0.97|http://unitsofmeasure.org|g/L", {"mass"}),
        ("97|http://unitsofmeasure.org|mmol/L", set()),  # another dimension is never compared
        ("le100", {"mass", "molar"}),
        ("ge100", {"weight"}),
    ],
)
def test_value_quantity_compares_with_prefixes_and_units(carol, value, expected):
    assert carol(f"value-quantity={value}") == expected


def test_value_quantity_ne_and_two_values_together(carol):
    assert carol("value-quantity=ne97") == {"molar", "panel", "weight"}
    assert carol("value-quantity=gt1&value-quantity=lt100") == {"mass", "molar"}


@pytest.mark.parametrize(
    "value", ["abc", "gt", "5|http://unitsofmeasure.org|[no_such_unit]", "5|http://unitsofmeasure.org", "1e999"]
)
def test_an_unreadable_value_quantity_is_a_400_naming_it(api, clinician, token_for, issue_grant, alice_record, value):
    issue_grant()
    response = api.get(
        f"/fhir/Observation?patient={_patient_id(alice_record)}&value-quantity={value}", **bearer(token_for(clinician))
    )
    body = orjson.loads(response.content)
    assert (response.status_code, body["resourceType"]) == (400, "OperationOutcome")
    assert "value-quantity" in body["issue"][0]["diagnostics"]


def test_a_clinician_without_a_grant_finds_nothing_and_learns_nothing(
    api, other_clinician, token_for, issue_grant, alice_record, measured
):
    issue_grant()
    token = token_for(other_clinician)
    query = "value-quantity=ap84||kg&code:text=quokka&combo-code=weight&_summary=true&_sort=-date,_id"
    response = api.get(f"/fhir/Observation?patient={_patient_id(alice_record)}&{query}", **bearer(token))
    nobody = api.get(f"/fhir/Observation?patient=no-such-patient&{query}", **bearer(token))
    bundle = orjson.loads(response.content)
    assert (response.status_code, bundle["total"], "entry" in bundle) == (200, 0, False)
    assert response.content == nobody.content.replace(b"no-such-patient", _patient_id(alice_record).encode())


def test_summary_true_keeps_the_summary_elements_and_data_drops_the_narrative(api, patient_user, token_for, measured):
    token = token_for(patient_user)
    _, full = _get_one(api, token, measured["mass"], "")
    _, summary = _get_one(api, token, measured["mass"], "&_summary=true")
    _, data = _get_one(api, token, measured["mass"], "&_summary=data")
    assert set(summary) <= summary_elements("Observation") | {"resourceType"}
    assert "effectiveDateTime" in summary
    assert "status" in summary
    assert "text" in full
    assert "text" not in summary
    assert "text" not in data
    assert summary["valueQuantity"] == full["valueQuantity"]
    assert summary["code"] == full["code"]
    assert set(data) == set(full) - {"text"}
    subsetted = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
    assert subsetted in summary["meta"]["tag"]
    assert subsetted in data["meta"]["tag"]
    assert "tag" not in full["meta"]


def _get_one(api, token: str, resource_id: str, extra: str):  # type: ignore[no-untyped-def]
    response = api.get(f"/fhir/Observation?_id={resource_id}{extra}", **bearer(token))
    assert response.status_code == 200, response.content
    return response, orjson.loads(response.content)["entry"][0]["resource"]


def test_sort_on_several_keys(api, patient_user, token_for, measured):
    token = token_for(patient_user)
    ids = ",".join(measured.values())

    def order(sort: str) -> list[str]:
        response = api.get(f"/fhir/Observation?_id={ids}&_sort={sort}", **bearer(token))
        assert response.status_code == 200, response.content
        by_id = {v: k for k, v in measured.items()}
        return [by_id[e["resource"]["id"]] for e in orjson.loads(response.content)["entry"]]

    assert order("date,_id") == ["mass", "molar", "panel", "weight"]
    assert order("-date,_id") == ["weight", "panel", "molar", "mass"]
    rows = dict(Resource.objects.filter(fhir_id__in=measured.values()).values_list("fhir_id", "updated_at"))
    by_update = sorted(measured, key=lambda name: (rows[measured[name]], measured[name]))
    assert order("_lastUpdated,_id") == by_update
    assert order("-_lastUpdated,-_id") == by_update[::-1]
    response = api.get(f"/fhir/Observation?_id={ids}&_sort=date,-date", **bearer(token))
    assert response.status_code == 400
    assert api.get(f"/fhir/Observation?_id={ids}&_sort=status", **bearer(token)).status_code == 400
