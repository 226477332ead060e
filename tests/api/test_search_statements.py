"""What a gated search costs the database, and what it leaves in the access log.

A search naming its patient is the API's other hot path. One statement checks the bearer token and
finds the record together with the token user's live grants on it; one reads the page (with its
total); one autocommitted INSERT logs it: no BEGIN, no COMMIT, no savepoint. A change that adds a
round trip to every search fails here. The token's verdict still comes first: a bad token is 401
whether or not the patient exists, and nothing is logged. The entry names every version served,
is committed before the answer, and the sealed log verifies with it.
"""

from __future__ import annotations

import orjson
import psycopg
import pytest
from django.db import DatabaseError, connection

from audit.models import AccessLogEntry
from audit.services import access_log_seal, access_log_verify
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def _statements(api, url: str, token: str) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    # Every statement Django's connection executes (savepoints too), prepared or not, as the SQL text given.
    seen: list[str] = []

    def record(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        response = api.get(url, **bearer(token))
    return response.status_code, seen


def _patient_id(record) -> str:  # type: ignore[no-untyped-def]
    return Resource.objects.get(patient=record, resource_type="Patient").fhir_id


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the record and its page in one statement there")
def test_a_permitted_search_of_a_whole_type_is_two_statements_token_record_grants_and_page_then_log(
    api, clinician, token_for, issue_grant, alice_record
):
    issue_grant()
    token = token_for(clinician)
    url = f"/fhir/Observation?patient={_patient_id(alice_record)}&_count=100"
    api.get(url, **bearer(token))  # first request: nothing is cached that a later one would not have

    status, statements = _statements(api, url, token)

    assert status == 200
    assert len(statements) == 2, statements
    first, log_insert = statements
    # The page comes with the record, each version from the copy its resource row carries (current_ciphertext).
    for table in ("token_checksum", "consent_grant", "records_patient", "current_ciphertext"):
        assert table in first
    assert log_insert.lstrip().upper().startswith("INSERT INTO")
    assert "audit_accesslogentry" in log_insert


def test_a_search_with_criteria_reads_its_page_on_its_own_without_the_records_key(
    api, clinician, token_for, issue_grant, alice_record
):
    issue_grant()
    token = token_for(clinician)
    url = f"/fhir/Observation?patient={_patient_id(alice_record)}&_sort=_lastUpdated&_count=5"
    api.get(url, **bearer(token))

    status, statements = _statements(api, url, token)

    assert status == 200
    first, *pages, log_insert = statements
    assert "consent_grant" in first
    assert "records_resourceversion" not in first  # a page of a whole type is the only one read ahead
    assert any("records_resourceversion" in page for page in pages)
    assert "audit_accesslogentry" in log_insert


def test_a_denied_search_is_the_same_first_statement_then_its_deny_entry(
    api, other_clinician, token_for, issue_grant, alice_record
):
    issue_grant()
    token = token_for(other_clinician)

    status, statements = _statements(api, f"/fhir/Observation?patient={_patient_id(alice_record)}", token)

    assert status == 200
    assert len(statements) == 2, statements
    assert "token_checksum" in statements[0]
    assert "audit_accesslogentry" in statements[1]
    assert AccessLogEntry.objects.get(action="records.search").outcome == "deny"


@pytest.mark.parametrize("exists", [True, False], ids=["existing", "missing"])
def test_a_bad_token_is_401_whether_or_not_the_patient_exists_and_nothing_is_logged(
    api, clinician, token_for, issue_grant, alice_record, exists
):
    issue_grant()
    token_for(clinician)  # a live token exists; this request does not carry it
    named = _patient_id(alice_record) if exists else "does-not-exist"

    status, statements = _statements(api, f"/fhir/Observation?patient={named}", "not-a-token")

    assert status == 401
    assert len(statements) == 2, statements  # the search's first statement, then the token's own lookup
    assert not AccessLogEntry.objects.filter(action="records.search").exists()


@pytest.mark.parametrize(
    "query",
    ["patient={pid}&_count=-1", "patient={pid}&date=notadate", "patient=Patient/a&subject=Patient/b", "patient=!"],
)
def test_a_bad_token_is_401_before_a_bad_parameter_is_400(api, alice_record, query):
    url = "/fhir/Observation?" + query.format(pid=_patient_id(alice_record))

    assert api.get(url, **bearer("not-a-token")).status_code == 401
    assert api.get(url).status_code == 401
    assert not AccessLogEntry.objects.filter(action="records.search").exists()


def test_a_token_that_cannot_search_the_type_is_403_whether_or_not_the_patient_exists(
    api, clinician, token_for, issue_grant, alice_record
):
    issue_grant()
    token = token_for(clinician, scope="user/Condition.rs")

    found = api.get(f"/fhir/Observation?patient={_patient_id(alice_record)}", **bearer(token))
    missing = api.get("/fhir/Observation?patient=does-not-exist", **bearer(token))

    assert found.status_code == missing.status_code == 403
    assert found.content == missing.content
    assert not AccessLogEntry.objects.filter(action="records.search").exists()


@pytest.fixture
def long_record(other_patient):  # type: ignore[no-untyped-def]
    """Bob's record with ten years of generated data: well over a hundred Observations."""
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(31, years=10)), actor="system:test", patient=other_patient)
    assert Resource.objects.filter(patient=other_patient, resource_type="Observation").count() > 100
    return other_patient


def _committed_search_entries(patient_ref: object) -> list[tuple[str, list[str]]]:
    # Through a connection of its own: what another session sees is what was committed.
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"] or "postgres",
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
    ) as other:
        rows = other.execute(
            f"SELECT outcome, resource_ids FROM {AccessLogEntry._meta.db_table}"
            " WHERE action = 'records.search' AND patient_ref = %s",
            [patient_ref],
        ).fetchall()
    return [(outcome, ids) for outcome, ids in rows]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a second session sees only committed rows there")
@pytest.mark.django_db(transaction=True)
def test_a_search_of_100_is_one_committed_entry_naming_each_version_served_and_the_log_verifies(
    api, clinician, token_for, issue_grant, long_record
):
    grant = issue_grant(patient=long_record, by=long_record.user)
    token = token_for(clinician)

    response = api.get(f"/fhir/Observation?patient={_patient_id(long_record)}&_count=100", **bearer(token))

    assert response.status_code == 200
    bundle = orjson.loads(response.content)
    served = [
        f"Observation/{e['resource']['id']}/_history/{e['resource']['meta']['versionId']}" for e in bundle["entry"]
    ]
    assert len(served) == 100
    [(outcome, logged)] = _committed_search_entries(long_record.pk)
    assert outcome == "permit"
    assert logged == served
    entry = AccessLogEntry.objects.get(action="records.search")
    assert entry.grant_ref == grant.id
    access_log_seal()
    report = access_log_verify()
    assert report.ok, report.problem
    assert AccessLogEntry.objects.filter(seq__isnull=True).count() == 0


def test_a_search_whose_entry_cannot_be_written_serves_nothing(
    api, clinician, token_for, issue_grant, alice_record, monkeypatch
):
    issue_grant()
    token = token_for(clinician)

    def refuse(**kwargs: object) -> int:
        raise DatabaseError("the access log is not writable")

    monkeypatch.setattr("consent.gate.search.access_log_commit", refuse)
    with pytest.raises(DatabaseError):
        api.get(f"/fhir/Observation?patient={_patient_id(alice_record)}", **bearer(token))
    assert not AccessLogEntry.objects.filter(action="records.search").exists()
