"""What a gated read costs the database: two statements, both prepared on PostgreSQL.

A read by type and id is the API's hot path. One statement checks the bearer token and finds the
version together with its owner, its keys and the token user's live grants on that owner; the
second commits the access-log row: nothing more. A change that adds a round trip to every read
fails here. The token's verdict still comes first: a bad token is 401 whether or not the
resource exists, and costs a second look only on that path or when nothing was found.
"""

from __future__ import annotations

import pytest
from django.db import connection

from audit.models import AccessLogEntry
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def _statements(api, url: str, token: str) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    # Every statement Django's connection executes, prepared or not, as the SQL text it was given.
    seen: list[str] = []

    def record(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        response = api.get(url, **bearer(token))
    return response.status_code, seen


def test_a_permitted_read_is_two_statements_token_row_and_grants_then_log(
    api, clinician, token_for, issue_grant, an_observation
):
    issue_grant()
    token = token_for(clinician)
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    api.get(url, **bearer(token))  # first request: nothing is cached that a later one would not have

    status, statements = _statements(api, url, token)

    assert status == 200
    assert len(statements) == 2, statements
    locate, log_insert = statements
    assert "token_checksum" in locate
    assert "consent_grant" in locate
    assert "records_resourceversion" in locate
    assert log_insert.lstrip().upper().startswith("INSERT INTO")
    assert "audit_accesslogentry" in log_insert


def test_a_denied_read_costs_the_same_two_statements(api, other_clinician, token_for, issue_grant, an_observation):
    issue_grant()
    token = token_for(other_clinician)
    url = f"/fhir/Observation/{an_observation.fhir_id}"

    status, statements = _statements(api, url, token)

    assert status == 404
    assert len(statements) == 2, statements
    assert "audit_accesslogentry" in statements[1]


def test_a_missing_resource_looks_the_token_up_on_its_own_and_logs_nothing(api, clinician, token_for):
    token = token_for(clinician)

    status, statements = _statements(api, "/fhir/Observation/does-not-exist", token)

    assert status == 404
    assert len(statements) == 2, statements
    assert "records_resourceversion" in statements[0]
    assert "token_checksum" in statements[1]
    assert "records_resourceversion" not in statements[1]
    assert not AccessLogEntry.objects.filter(action="records.read").exists()


@pytest.mark.parametrize("exists", [True, False], ids=["existing", "missing"])
def test_a_bad_token_is_401_whether_or_not_the_resource_exists_and_nothing_is_logged(
    api, clinician, token_for, issue_grant, an_observation, exists
):
    issue_grant()
    token_for(clinician)  # a live token exists; this request does not carry it
    url = f"/fhir/Observation/{an_observation.fhir_id if exists else 'does-not-exist'}"

    status, statements = _statements(api, url, "not-a-token")

    assert status == 401
    assert len(statements) == 2, statements  # the read's statement, then the token's own lookup
    assert not AccessLogEntry.objects.filter(action="records.read").exists()


@pytest.mark.parametrize(
    "url",
    ["/fhir/Observation/{id}", "/fhir/Observation/{id}/_history/1", "/fhir/Observation/{id}/_history/0",
     "/fhir/Consentx/{id}", "/fhir/Observation/does-not-exist"],
)  # fmt: skip
def test_without_a_token_or_with_an_oversized_one_every_read_path_is_401(api, an_observation, url):
    url = url.format(id=an_observation.fhir_id)

    assert api.get(url).status_code == 401
    assert api.get(url, **bearer("x" * 600)).status_code == 401
    assert not AccessLogEntry.objects.filter(action="records.read").exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
def test_on_postgresql_the_read_path_statements_are_prepared_once_and_reused(
    api, clinician, token_for, issue_grant, an_observation
):
    issue_grant()
    token = token_for(clinician)
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    for _ in range(4):
        assert api.get(url, **bearer(token)).status_code == 200

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("token_checksum" in sql for sql in prepared), prepared
    assert any("consent_grant" in sql and "records_resourceversion" in sql for sql in prepared), prepared
    assert any("audit_accesslogentry" in sql for sql in prepared), prepared
