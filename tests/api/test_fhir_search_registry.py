"""Search parameters come from one registry per type: unknown ones are ignored (or refused when strict), and the
CapabilityStatement lists per type exactly what a search takes, with each definition's canonical URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from django.utils import timezone

from records.fhir.search_parameters import search_parameters
from records.models import Resource
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

STRICT = {"HTTP_PREFER": "handling=strict"}


def _get(api, token: str, url: str, **headers: str):  # type: ignore[no-untyped-def]
    response = api.get(url, **bearer(token), **headers)
    return response, orjson.loads(response.content)


def _self_query(bundle: dict) -> dict[str, list[str]]:  # type: ignore[type-arg]
    url = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    return parse_qs(urlsplit(url).query)


def test_unknown_parameters_are_ignored_and_named_in_an_outcome_entry_and_left_out_of_the_self_link(
    api, patient_user, token_for, alice_record
):
    token = token_for(patient_user)
    _, plain = _get(api, token, "/fhir/Observation?_count=1000")
    response, bundle = _get(api, token, "/fhir/Observation?_count=1000&colour=blue&_totalMethod=accurate")

    assert response.status_code == 200
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert [e["resource"]["id"] for e in matches] == [e["resource"]["id"] for e in plain["entry"]]
    assert bundle["total"] == plain["total"]
    outcome = bundle["entry"][-1]
    assert outcome["search"] == {"mode": "outcome"}
    assert outcome["resource"]["resourceType"] == "OperationOutcome"
    assert outcome["resource"]["issue"][0]["diagnostics"] == "search parameter(s) ignored: _totalMethod, colour"
    assert set(_self_query(bundle)) == {"_count", "_offset"}


def test_prefer_handling_strict_refuses_an_unknown_parameter_with_a_400(api, patient_user, token_for, alice_record):
    response, body = _get(api, token_for(patient_user), "/fhir/Observation?colour=blue", **STRICT)
    assert response.status_code == 400
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"].startswith("unsupported search parameter(s): colour;")


def test_a_parameter_of_another_type_is_not_one_of_patient(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    strict, _ = _get(api, token, "/fhir/Patient?code=http://loinc.org|8867-4", **STRICT)
    assert strict.status_code == 400
    response, bundle = _get(api, token, "/fhir/Patient?code=http://loinc.org|8867-4")
    assert response.status_code == 200
    assert bundle["entry"][-1]["resource"]["issue"][0]["diagnostics"] == "search parameter(s) ignored: code"


def test_patients_are_found_by_birthdate(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    patient = Resource.objects.get(patient=alice_record, resource_type="Patient")
    _, own = _get(api, token, f"/fhir/Patient/{patient.fhir_id}")
    born = own["birthDate"]
    _, found = _get(api, token, f"/fhir/Patient?birthdate={born}")
    _, before = _get(api, token, f"/fhir/Patient?birthdate=lt{born}")
    assert ([e["resource"]["id"] for e in found["entry"]], before["total"]) == ([patient.fhir_id], 0)


def test_a_denied_search_with_an_ignored_parameter_looks_like_a_search_of_nobody(
    api, other_clinician, token_for, alice_record
):
    token = token_for(other_clinician)
    fhir_id = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    denied = api.get(f"/fhir/Observation?patient={fhir_id}&colour=blue", **bearer(token))
    nobody = api.get("/fhir/Observation?patient=no-such-patient&colour=blue", **bearer(token))
    assert denied.status_code == nobody.status_code == 200
    assert denied.content.replace(fhir_id.encode(), b"X") == nobody.content.replace(b"no-such-patient", b"X")


def test_the_capability_statement_lists_per_type_exactly_what_its_search_takes(api):
    statement = orjson.loads(api.get("/fhir/metadata").content)
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}

    def names(resource_type: str) -> set[str]:
        return {p["name"] for p in resources[resource_type]["searchParam"]}

    patient = {"_id", "_lastUpdated", "birthdate", "gender", "identifier", "name", "family", "given"}
    assert names("Patient") == patient
    observation = {"_id", "_lastUpdated", "patient", "subject", "code", "category", "date", "status", "encounter"}
    observation |= {"combo-code", "component-code", "value-quantity"}
    assert names("Observation") == observation
    assert "code" not in names("Patient")
    assert names("Encounter") == set(search_parameters("Encounter"))
    by_name = {p["name"]: p for p in resources["Observation"]["searchParam"]}
    assert by_name["_id"]["definition"] == "http://hl7.org/fhir/SearchParameter/Resource-id"
    # Observation's code is its own (HL7's clinical-code); with its components' it is combo-code.
    assert by_name["code"]["definition"] == "http://hl7.org/fhir/SearchParameter/clinical-code"
    assert by_name["combo-code"]["definition"] == "http://hl7.org/fhir/SearchParameter/Observation-combo-code"
    condition = {p["name"]: p for p in resources["Condition"]["searchParam"]}
    assert condition["code"]["definition"] == "http://testserver/fhir/SearchParameter/Condition-code"


def test_the_servers_own_search_parameter_definitions_resolve(api):
    response = api.get("/fhir/SearchParameter/Condition-code")
    definition = orjson.loads(response.content)
    assert response.status_code == 200
    assert (
        definition["url"],
        definition["code"],
        definition["base"],
        definition["expression"],
        definition["modifier"],
    ) == ("http://testserver/fhir/SearchParameter/Condition-code", "code", ["Condition"], "Condition.code", ["text"])
    assert api.get("/fhir/SearchParameter/Observation-colour").status_code == 404


def test_summary_count_returns_only_the_total(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    _, counted = _get(api, token, "/fhir/Observation?_summary=count")
    expected = Resource.objects.filter(patient=alice_record, resource_type="Observation").count()
    assert (counted["total"], "entry" in counted, _self_query(counted)["_count"]) == (expected, False, ["0"])
    response, _ = _get(api, token, "/fhir/Observation?_summary=text")
    assert response.status_code == 400


def test_a_patient_compartment_search_is_the_search_of_that_patient(
    api, clinician, other_clinician, token_for, issue_grant, alice_record
):
    issue_grant()
    fhir_id = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    token = token_for(clinician)
    _, plain = _get(api, token, f"/fhir/Observation?patient={fhir_id}&_count=7")
    response, compartment = _get(api, token, f"/fhir/Patient/{fhir_id}/Observation?_count=7")

    assert response.status_code == 200
    assert compartment["total"] == plain["total"] > 0
    assert [e["resource"]["id"] for e in compartment["entry"]] == [e["resource"]["id"] for e in plain["entry"]]
    next_url = next(link["url"] for link in compartment["link"] if link["relation"] == "next")
    assert urlsplit(next_url).path == f"/fhir/Patient/{fhir_id}/Observation"
    _, elsewhere = _get(api, token, f"/fhir/Patient/{fhir_id}/Observation?patient=someone-else")
    assert elsewhere["total"] == 0
    stranger = api.get(f"/fhir/Patient/{fhir_id}/Observation", **bearer(token_for(other_clinician)))
    nobody = api.get("/fhir/Patient/no-such-patient/Observation", **bearer(token_for(other_clinician)))
    assert stranger.content.replace(fhir_id.encode(), b"X") == nobody.content.replace(b"no-such-patient", b"X")


def test_post_search_takes_a_form_body_and_answers_as_the_get_would(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    _, plain = _get(api, token, "/fhir/Observation?_count=3&_sort=-date")
    response = api.post(
        "/fhir/Observation/_search",
        data="_count=3&_sort=-date",
        content_type="application/x-www-form-urlencoded",
        **bearer(token),
    )
    bundle = orjson.loads(response.content)
    assert response.status_code == 200
    assert [e["resource"]["id"] for e in bundle["entry"]] == [e["resource"]["id"] for e in plain["entry"]]
    self_url = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert urlsplit(self_url).path == "/fhir/Observation"
    assert _self_query(bundle)["_sort"] == ["-date"]
    wrong = api.post("/fhir/Observation/_search", data=b"{}", content_type="application/json", **bearer(token))
    assert wrong.status_code == 415


def _alice(api, token: str, alice_record) -> dict:  # type: ignore[no-untyped-def,type-arg]
    fhir_id = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    return _get(api, token, f"/fhir/Patient/{fhir_id}")[1]


def test_a_granted_clinician_finds_the_patient_by_name_gender_and_identifier(
    api, clinician, other_clinician, token_for, issue_grant, alice_record
):
    issue_grant(resource_types=["Patient", "Observation"])
    token = token_for(clinician)
    alice = _alice(api, token, alice_record)
    family, given = alice["name"][0]["family"], alice["name"][0]["given"][0]
    identifier = alice["identifier"][0]
    queries = {
        f"family={family[:3].upper()}": 1,
        f"given={given.lower()}": 1,
        f"name={given[:2]} {family[:2]}": 1,
        f"family={family}zz": 0,
        f"gender={alice['gender']}": 1,
        "gender=unknown-gender": 0,
        f"identifier={identifier['system']}|{identifier['value']}": 1,
        f"identifier={identifier['value']}": 1,
        "identifier=no-such-value": 0,
    }
    for query, expected in queries.items():
        response, bundle = _get(api, token, f"/fhir/Patient?_id={alice['id']}&{query}")
        assert (query, response.status_code, bundle["total"]) == (query, 200, expected)
    stranger = token_for(other_clinician)
    denied = api.get(f"/fhir/Patient?_id={alice['id']}&family={family}", **bearer(stranger))
    nobody = api.get(f"/fhir/Patient?_id=no-such-patient&family={family}", **bearer(stranger))
    assert denied.content.replace(alice["id"].encode(), b"X") == nobody.content.replace(b"no-such-patient", b"X")


def test_observations_are_found_by_status(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    _, everything = _get(api, token, "/fhir/Observation?_summary=count")
    _, final = _get(api, token, "/fhir/Observation?status=final&_summary=count")
    _, either = _get(api, token, "/fhir/Observation?status=amended,final&_summary=count")
    _, amended = _get(api, token, "/fhir/Observation?status=amended&_summary=count")
    assert (final["total"], either["total"], amended["total"]) == (everything["total"], everything["total"], 0)


def _count(api, token: str, query: str) -> int:  # type: ignore[no-untyped-def]
    response, bundle = _get(api, token, f"/fhir/Observation?_summary=count&{query}")
    assert response.status_code == 200, bundle
    return int(bundle["total"])


def test_date_prefixes_ne_sa_eb_and_ap(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    total = _count(api, token, "")
    _, page = _get(api, token, "/fhir/Observation?_count=1&_sort=date")
    day = page["entry"][0]["resource"]["effectiveDateTime"][:10]

    on_day = _count(api, token, f"date={day}")
    assert 0 < on_day < total
    assert _count(api, token, f"date=ne{day}") == total - on_day
    assert _count(api, token, f"date=sa{day}") == _count(api, token, f"date=gt{day}")
    assert _count(api, token, f"date=eb{day}") == _count(api, token, f"date=lt{day}") == 0
    assert on_day <= _count(api, token, f"date=ap{day}") <= total
    year = str(timezone.now().year)
    assert (_count(api, token, f"_lastUpdated=ne{year}"), _count(api, token, "_lastUpdated=ne1999")) == (0, total)
    assert _count(api, token, f"_lastUpdated=ap{year}") == total


def test_sort_by_id_and_last_updated_pages_in_order(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    _, everything = _get(api, token, "/fhir/Observation?_count=1000")
    ids = sorted(e["resource"]["id"] for e in everything["entry"])
    _, first = _get(api, token, "/fhir/Observation?_sort=_id&_count=5")
    _, second = _get(api, token, "/fhir/Observation?_sort=_id&_count=5&_offset=5")
    _, descending = _get(api, token, "/fhir/Observation?_sort=-_id&_count=5")
    assert [e["resource"]["id"] for e in first["entry"] + second["entry"]] == ids[:10]
    assert [e["resource"]["id"] for e in descending["entry"]] == ids[::-1][:5]
    assert first["total"] == len(ids)
    _, updated = _get(api, token, "/fhir/Observation?_sort=-_lastUpdated&_count=1000")
    stamps = [e["resource"]["meta"]["lastUpdated"] for e in updated["entry"]]
    assert stamps == sorted(stamps, reverse=True)
    assert len(stamps) == len(ids)


def test_elements_returns_only_the_named_elements_marked_subsetted(api, patient_user, token_for, alice_record):
    token = token_for(patient_user)
    _, bundle = _get(api, token, "/fhir/Observation?_count=3&_elements=code,Observation.status")
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert set(resource) == {"resourceType", "id", "meta", "code", "status"}
        assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"
    response, outcome = _get(api, token, "/fhir/Observation?_elements=code;drop")
    assert (response.status_code, outcome["resourceType"]) == (400, "OperationOutcome")


def test_a_code_without_its_system_and_an_absolute_patient_reference(
    api, clinician, token_for, issue_grant, alice_record
):
    issue_grant()
    token = token_for(clinician)
    fhir_id = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    with_system = _count_of(api, token, f"patient={fhir_id}&code=http://loinc.org|8867-4")
    assert with_system > 0
    assert _count_of(api, token, f"patient={fhir_id}&code=8867-4") == with_system
    assert _count_of(api, token, f"patient={fhir_id}&code=|8867-4") == 0
    assert _count_of(api, token, f"patient=http://testserver/fhir/Patient/{fhir_id}&code=8867-4") == with_system


def _count_of(api, token: str, query: str) -> int:  # type: ignore[no-untyped-def]
    response, bundle = _get(api, token, f"/fhir/Observation?_summary=count&{query}")
    assert response.status_code == 200, bundle
    return int(bundle["total"])
