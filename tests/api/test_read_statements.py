"""What a gated read costs the database: three statements, the fixed ones prepared on PostgreSQL.

A read by type and id is the API's hot path. It looks the token up, finds the version together
with its owner, its keys and the caller's live grants on that owner, and commits its access-log
row: nothing more. A change that adds a round trip to every read fails here.
"""

from __future__ import annotations

import pytest
from django.db import connection

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


def test_a_permitted_read_is_three_statements_token_row_and_grants_log(
    api, clinician, token_for, issue_grant, an_observation
):
    issue_grant()
    token = token_for(clinician)
    url = f"/fhir/Observation/{an_observation.fhir_id}"
    api.get(url, **bearer(token))  # first request: nothing is cached that a later one would not have

    status, statements = _statements(api, url, token)

    assert status == 200
    assert len(statements) == 3, statements
    token_lookup, locate, log_insert = statements
    assert "token_checksum" in token_lookup
    assert "consent_grant" in locate
    assert "records_resourceversion" in locate
    assert log_insert.lstrip().upper().startswith("INSERT INTO")
    assert "audit_accesslogentry" in log_insert


def test_a_denied_read_costs_the_same_three_statements(api, other_clinician, token_for, issue_grant, an_observation):
    issue_grant()
    token = token_for(other_clinician)
    url = f"/fhir/Observation/{an_observation.fhir_id}"

    status, statements = _statements(api, url, token)

    assert status == 404
    assert len(statements) == 3, statements
    assert "audit_accesslogentry" in statements[2]


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
