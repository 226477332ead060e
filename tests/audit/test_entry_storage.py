"""How access-log rows are stored on PostgreSQL: a search's long entry is written inline, once."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from audit.models import AccessLogEntry, Outcome
from audit.services import LogEvent, access_log_commit

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="TOAST storage is PostgreSQL's")


def _toast_pages() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = %s::regclass",
            [AccessLogEntry._meta.db_table],
        )
        return int(cursor.fetchone()[0])


def test_a_search_entry_naming_a_hundred_versions_stays_inline_and_reads_back_whole(db: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE oid = %s::regclass", [AccessLogEntry._meta.db_table])
        assert "toast_tuple_target=8160" in (cursor.fetchone()[0] or [])
    references = tuple(f"Observation/{uuid.uuid4()}/_history/1" for _ in range(100))
    before = _toast_pages()
    entry_id = access_log_commit(
        event=LogEvent(
            actor="user:1",
            action="records.search",
            outcome=Outcome.PERMIT,
            patient_ref=uuid.uuid4(),
            purpose="TREAT",
            resource_ids=references,
            query="patient=x&_count=100",
        )
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_size(resource_ids), length(resource_ids::text) FROM audit_accesslogentry WHERE id = %s",
            [entry_id],
        )
        stored, text = cursor.fetchone()
    assert text > 2048  # past the default TOAST target: this row would have been compressed and moved
    assert stored >= text  # stored as it is: not compressed
    assert _toast_pages() == before  # and nothing written to the TOAST table
    assert tuple(AccessLogEntry.objects.get(pk=entry_id).resource_ids) == references
