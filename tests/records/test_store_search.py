"""Search through blind-index tokens only: type, code, category, date ranges; never another patient's data."""

from __future__ import annotations

import json
from datetime import date

import pytest

from records.blind_index import date_cover
from records.fhir.search_parameters import search_terms
from records.models import IndexToken, Resource
from records.selectors import resource_ids_by_date, resource_search
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db

LOINC = "http://loinc.org"
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


def _observation(code: str, category: str, day: str) -> dict:
    system, value = category.split("|")
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": system, "code": value}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": day,
        "valueQuantity": {"value": 1.0},
    }


def _import(patient, *observations: dict, start: int = 0) -> list[str]:  # type: ignore[no-untyped-def]
    payload = json.dumps(
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{start + n:012d}",
                    "resource": obs,
                    "request": {"method": "POST", "url": "Observation"},
                }
                for n, obs in enumerate(observations)
            ],
        }
    ).encode()
    result = fhir_ingest(payload=payload, actor="t", patient=patient)
    return [ref.split("/_history/")[0].split("/")[1] for ref in result.patients[patient.pk].created]


@pytest.fixture
def ids(patient):  # type: ignore[no-untyped-def]
    return _import(
        patient,
        _observation("4548-4", LAB, "2020-01-15"),
        _observation("4548-4", LAB, "2021-06-30"),
        _observation("8480-6", VITALS, "2021-07-01"),
        _observation("8480-6", VITALS, "2023-12-31T23:00:00Z"),
    )


def _found(**criteria) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.fhir_id for r in resource_search(**criteria)]


def test_search_by_code_finds_exactly_that_code(patient, ids):
    assert _found(patient=patient, code=f"{LOINC}|4548-4") == ids[:2]
    assert _found(patient=patient, code=f"{LOINC}|8480-6") == ids[2:]
    assert _found(patient=patient, code=f"{LOINC}|0000-0") == []


def test_search_by_category_and_type(patient, ids):
    assert _found(patient=patient, category=VITALS) == ids[2:]
    assert _found(patient=patient, resource_type="Observation", category=LAB) == ids[:2]
    assert _found(patient=patient, resource_type="Condition") == []


def test_search_by_date_range_covers_the_bounds_inclusively(patient, ids):
    assert _found(patient=patient, date_ge=date(2021, 6, 30), date_le=date(2021, 7, 1)) == ids[1:3]
    assert _found(patient=patient, date_ge=date(2021, 1, 1)) == ids[1:]
    assert _found(patient=patient, date_le=date(2020, 12, 31)) == ids[:1]
    assert _found(patient=patient, date_ge=date(2022, 1, 1), date_le=date(2022, 12, 31)) == []
    assert _found(patient=patient, date_ge=date(2022, 1, 2), date_le=date(2022, 1, 1)) == []


def test_criteria_combine_with_and(patient, ids):
    assert _found(patient=patient, code=f"{LOINC}|8480-6", date_le=date(2022, 1, 1)) == ids[2:3]


def test_search_never_returns_another_patients_resources(patient, other_patient, ids):
    theirs = _import(other_patient, _observation("4548-4", LAB, "2020-01-15"))
    assert _found(patient=other_patient, code=f"{LOINC}|4548-4") == theirs
    assert _found(patient=patient, code=f"{LOINC}|4548-4") == ids[:2]


def test_equal_codes_of_two_patients_have_unrelated_tokens(patient, other_patient, ids):
    theirs = _import(other_patient, _observation("4548-4", LAB, "2020-01-15"))
    mine = set(IndexToken.objects.filter(resource__fhir_id=ids[0]).values_list("token", flat=True))
    other = set(IndexToken.objects.filter(resource__fhir_id=theirs[0]).values_list("token", flat=True))
    # code (with and without its system), category, status, the date as year, month and day, and its sort
    # tokens at year, month and day; and Observation's own code and its value at seven precisions
    terms = search_terms(_observation("4548-4", LAB, "2020-01-15"))
    assert len(terms - {"status=final"}) == 2 + 7
    assert len(mine) == len(other) == 10 + 2 + 7
    assert not {bytes(t) for t in mine} & {bytes(t) for t in other}


def test_limit_and_offset_page_through_results(patient, ids):
    assert _found(patient=patient, limit=2) == ids[:2]
    assert _found(patient=patient, limit=2, offset=2) == ids[2:]


def test_an_update_reindexes_the_resource(patient, ids):
    payload = json.dumps(
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {
                    "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000000",
                    "resource": _observation("2093-3", LAB, "2020-01-15"),
                    "request": {"method": "POST", "url": "Observation"},
                }
            ],
        }
    ).encode()
    fhir_ingest(payload=payload, actor="t", patient=patient)
    assert Resource.objects.get(fhir_id=ids[0]).current_version == 2
    assert _found(patient=patient, code=f"{LOINC}|4548-4") == ids[1:2]
    assert _found(patient=patient, code=f"{LOINC}|2093-3") == ids[:1]


def test_a_date_range_is_covered_by_few_buckets():
    assert date_cover(date(2020, 1, 1), date(2022, 12, 31)) == ["2020", "2021", "2022"]
    assert date_cover(date(2021, 11, 30), date(2022, 2, 1)) == ["2021-11-30", "2021-12", "2022-01", "2022-02-01"]
    assert date_cover(date(2024, 2, 1), date(2024, 2, 29)) == ["2024-02"]
    # Open-ended: the rest of May by day, June to December by month, then whole years up to 2099.
    assert len(date_cover(date(2021, 5, 17), None)) == 15 + 7 + 78
    assert len(date_cover(date(1, 1, 1), date(9999, 12, 31))) == 400  # clamped to 1800..2199


def test_resources_are_ordered_by_their_primary_date_from_sort_tokens_alone(patient, ids, monkeypatch):
    import records.decrypt

    def no_plaintext(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("ordering must not decrypt anything")

    monkeypatch.setattr(records.decrypt, "stored_version_decrypt", no_plaintext)
    no_date = _observation("2093-3", LAB, "2020-01-01")
    del no_date["effectiveDateTime"]
    undated = _import(patient, no_date, start=100)
    matching = Resource.objects.filter(patient=patient, resource_type="Observation")
    pk_of = dict(matching.values_list("pk", "fhir_id"))
    oldest_first = [pk_of[pk] for pk in resource_ids_by_date(patient=patient, matching=matching, descending=False)]
    newest_first = [pk_of[pk] for pk in resource_ids_by_date(patient=patient, matching=matching, descending=True)]
    assert oldest_first == [*ids, *undated]
    assert newest_first == [*reversed(ids), *undated]


def test_equal_dates_keep_storage_order_in_both_directions(patient):
    same = _import(
        patient, _observation("4548-4", LAB, "2022-05-05"), _observation("2093-3", LAB, "2022-05-05"), start=200
    )
    matching = Resource.objects.filter(patient=patient)
    pk_of = dict(matching.values_list("pk", "fhir_id"))
    for descending in (False, True):
        assert [
            pk_of[pk] for pk in resource_ids_by_date(patient=patient, matching=matching, descending=descending)
        ] == same
