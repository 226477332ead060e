"""Search: narrowed before it runs, counted only over what the caller may see, paged with stable links."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from django.utils import timezone

from audit.models import AccessLogEntry
from consent.gate import access_log_text
from records.fhir import index_terms
from records.models import Resource
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _search(api, token: str, query: str, resource_type: str = "Observation"):  # type: ignore[no-untyped-def]
    response = api.get(f"/fhir/{resource_type}?{query}", **bearer(token))
    return response, (orjson.loads(response.content) if response.content else None)


def _ids(bundle: dict) -> list[str]:  # type: ignore[type-arg]
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def _links(bundle: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {link["relation"]: link["url"] for link in bundle["link"]}


def _patient_id(record) -> str:  # type: ignore[no-untyped-def]
    return Resource.objects.get(patient=record, resource_type="Patient").fhir_id


def test_the_patient_pages_through_her_observations_with_links_that_keep_the_query(
    api, patient_user, token_for, alice_record
):
    token = token_for(patient_user)
    categories = f"{CATEGORY}|vital-signs,{CATEGORY}|no-such-category"
    response, first = _search(api, token, f"_count=5&category={categories}")

    assert response.status_code == 200
    assert first["type"] == "searchset"
    total = first["total"]
    assert total == Resource.objects.filter(patient=alice_record, resource_type="Observation").count() - 9
    seen = _ids(first)
    url = _links(first)["next"]
    pages = 1
    while url:
        query = parse_qs(urlsplit(url).query)
        assert query["category"] == [categories]
        assert query["_count"] == ["5"]
        page = orjson.loads(api.get(url, **bearer(token)).content)
        seen += _ids(page)
        url = _links(page).get("next")
        pages += 1
    assert pages == 4
    assert len(seen) == len(set(seen)) == total == 16
    assert "previous" in _links(page)


def test_a_clinician_must_name_the_patient(api, clinician, token_for, issue_grant):
    issue_grant()
    response, body = _search(api, token_for(clinician), "code=" + LOINC + "|8867-4")

    assert response.status_code == 400
    assert "patient=<id>" in body["issue"][0]["diagnostics"]


def test_the_granted_clinician_searches_by_code_and_the_page_is_logged(
    api, clinician, token_for, issue_grant, alice_record
):
    grant = issue_grant()
    pid = _patient_id(alice_record)
    response, bundle = _search(api, token_for(clinician), f"patient={pid}&code={LOINC}|8867-4")

    assert response.status_code == 200
    assert bundle["total"] == 2
    assert all(e["fullUrl"] == f"http://testserver/fhir/Observation/{e['resource']['id']}" for e in bundle["entry"])
    entry = AccessLogEntry.objects.get(action="records.search")
    assert (entry.outcome, entry.grant_ref) == ("permit", grant.id)
    assert sorted(entry.resource_ids) == sorted(f"Observation/{i}/_history/1" for i in _ids(bundle))
    assert access_log_text(patient_id=entry.patient_ref, text=entry.query) == f"patient={pid}&code={LOINC}|8867-4"


@pytest.mark.parametrize("persona", ["other_clinician", "researcher", "other_patient"])
def test_a_search_without_access_is_byte_identical_to_a_search_of_a_patient_that_does_not_exist(
    request, api, persona, token_for, alice_record
):
    who = request.getfixturevalue(persona)
    token = token_for(who.user if persona == "other_patient" else who)
    pid = _patient_id(alice_record)

    denied = api.get(f"/fhir/Observation?patient={pid}&_count=5", **bearer(token))
    nobody = api.get(f"/fhir/Observation?patient={pid}&_count=5", **bearer(token))
    Resource.objects.filter(fhir_id=pid).update(fhir_id="renamed")  # the same query, now naming nobody
    alice_record.__class__.objects.filter(pk=alice_record.pk).update(fhir_id="renamed")
    missing = api.get(f"/fhir/Observation?patient={pid}&_count=5", **bearer(token))

    assert denied.status_code == nobody.status_code == missing.status_code == 200
    assert denied.content == missing.content == nobody.content
    body = orjson.loads(denied.content)
    assert body["total"] == 0
    assert "entry" not in body
    assert set(_links(body)) == {"self", "first", "last"}
    assert AccessLogEntry.objects.filter(action="records.search", outcome="deny").count() == 2


def test_total_and_links_count_only_the_granted_categories(api, clinician, token_for, issue_grant, alice_record):
    issue_grant(categories=[f"{CATEGORY}|laboratory"])
    pid = _patient_id(alice_record)
    _, bundle = _search(api, token_for(clinician), f"patient={pid}&_count=3")

    assert bundle["total"] == 7
    assert set(_links(bundle)) == {"self", "first", "next", "last"}
    assert parse_qs(urlsplit(_links(bundle)["last"]).query)["_offset"] == ["6"]
    bodies = [e["resource"] for e in bundle["entry"]]
    assert all(CATEGORY + "|laboratory" in index_terms(b).categories for b in bodies)


def test_sort_by_date_orders_by_clinical_date_then_id_across_pages(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    _, first = _search(api, token, "_sort=-date&_count=10")
    _, second = _search(api, token, "_sort=-date&_count=10&_offset=10")
    _, ascending = _search(api, token, "_sort=date&_count=100")

    dates = [index_terms(e["resource"]).dates[0] for e in first["entry"] + second["entry"]]
    assert dates == sorted(dates, reverse=True)
    ordered = [(index_terms(e["resource"]).dates[0], e["resource"]["id"]) for e in ascending["entry"]]
    assert [d for d, _ in ordered] == sorted(d for d, _ in ordered)
    assert len(ascending["entry"]) == ascending["total"] == 25


def test_date_prefixes_select_calendar_days(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    _, everything = _search(api, token, "_sort=date&_count=100")
    days = sorted({index_terms(e["resource"]).dates[0] for e in everything["entry"]})
    first, last = days[0], days[-1]

    def total(query: str) -> int:
        return _search(api, token, query)[1]["total"]

    assert total(f"date={first.isoformat()}") + total(f"date=gt{first.isoformat()}") == 25
    assert total(f"date=ge{first.isoformat()}&date=le{last.isoformat()}") == 25
    assert total(f"date=lt{first.isoformat()}") == 0
    assert total(f"date=gt{last.isoformat()}") == 0
    assert total(f"date=eq{first.isoformat()}T08:00:00Z") == total(f"date={first.isoformat()}")


def test_last_updated_uses_the_server_time_of_the_current_version(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    now = timezone.now()
    before = (now.replace(microsecond=0) - timezone.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    after = (now + timezone.timedelta(hours=1)).replace(microsecond=0).isoformat().replace("+00:00", "Z")

    assert _search(api, token, f"_lastUpdated=gt{before}")[1]["total"] == 25
    assert _search(api, token, f"_lastUpdated=ge{after}")[1]["total"] == 0
    assert _search(api, token, f"_lastUpdated=ge{before}&_lastUpdated=lt{after}")[1]["total"] == 25
    assert _search(api, token, f"_lastUpdated=lt{before}")[1]["total"] == 0


def test_search_by_id_and_count_zero_gives_only_the_total(api, patient_user, token_for, an_observation):
    token = token_for(patient_user)
    _, by_id = _search(api, token, f"_id={an_observation.fhir_id}")
    _, counted = _search(api, token, "_count=0")

    assert _ids(by_id) == [an_observation.fhir_id]
    assert counted["total"] == 25
    assert "entry" not in counted
    assert set(_links(counted)) == {"self"}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("date=xx2024", "not a FHIR date"),
        ("date=2024-13-01", "not a valid date"),
        ("date=yesterday", "not a FHIR date"),
        ("code=http://loinc.org|", "system|code"),
        ("_count=many", "_count"),
        ("_count=5000", "at most 1000"),
        ("_sort=status", "_sort"),
        ("subject=Group/1", "subject"),
    ],
)
def test_bad_search_parameters_are_400_operation_outcomes_naming_them(
    api, patient_user, token_for, alice_record, query, named
):
    response, body = _search(api, token_for(patient_user), query)

    assert response.status_code == 400
    assert body["resourceType"] == "OperationOutcome"
    assert named in body["issue"][0]["diagnostics"]


def test_searching_a_type_the_token_cannot_search_is_403(api, patient_user, token_for, alice_record):
    response, body = _search(api, token_for(patient_user, scope="patient/Observation.r"), "_count=1")

    assert response.status_code == 403
    assert body["issue"][0]["code"] == "forbidden"


def test_storage_order_pages_cover_every_match_once_and_a_page_past_the_end_keeps_the_total(
    api, patient_user, token_for, alice_record
):
    token = token_for(patient_user)
    _, everything = _search(api, token, "_count=1000")
    total = everything["total"]
    assert total == len(everything["entry"]) > 10

    seen: list[str] = []
    for offset in range(0, total, 7):
        _, page = _search(api, token, f"_count=7&_offset={offset}")
        assert page["total"] == total
        seen += _ids(page)
    assert seen == _ids(everything)

    _, past = _search(api, token, f"_count=7&_offset={total + 5}")
    assert past["total"] == total
    assert "entry" not in past
    _, counted = _search(api, token, "_count=0")
    assert counted["total"] == total
    assert "entry" not in counted


def test_a_corrupted_resource_fails_only_itself_the_page_carries_the_rest_with_a_warning(
    api, patient_user, token_for, alice_record
):
    from records.models import Resource

    token = token_for(patient_user)
    _, before = _search(api, token, "_count=100")
    ids = _ids(before)
    broken = ids[1]
    # A page reads each current version from the copy its resource row carries (Resource.current_ciphertext).
    row = Resource.objects.get(fhir_id=broken, patient=alice_record)
    raw = bytearray(bytes(row.current_ciphertext))
    raw[20] ^= 0x01
    row.current_ciphertext = bytes(raw)
    row.save()

    response, after = _search(api, token, "_count=100")

    assert response.status_code == 200
    matches = [e["resource"]["id"] for e in after["entry"] if e["search"]["mode"] == "match"]
    assert matches == [i for i in ids if i != broken]
    (outcome,) = [e["resource"] for e in after["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome["issue"][0]["severity"] == "warning"
    assert outcome["issue"][0]["expression"] == [f"Observation/{broken}"]
    integrity = AccessLogEntry.objects.get(action="records.integrity")
    assert integrity.resource_ids == [f"Observation/{broken}/_history/1"]
    served = AccessLogEntry.objects.filter(action="records.search").order_by("-id").first()
    assert f"Observation/{broken}/_history/1" not in served.resource_ids
    assert len(served.resource_ids) == len(ids) - 1
