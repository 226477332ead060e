"""rebuild_blind_index gives records stored before a parameter existed the tokens for it, and logs each record."""

from __future__ import annotations

from dataclasses import replace
from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import AccessLogEntry
from consent.gate import Caller, resource_search_counted
from records.fhir import index_terms
from records.models import IndexToken, Resource
from records.selectors import SearchCriteria

pytestmark = pytest.mark.django_db


def _final(patient_user, record) -> int:  # type: ignore[no-untyped-def]
    page = resource_search_counted(
        caller=Caller(actor=patient_user),
        patient=record,
        resource_type="Observation",
        criteria=SearchCriteria(terms=(("status=final",),)),
        limit=0,
    )
    return page.total or 0


def test_a_record_indexed_without_term_tokens_is_searchable_by_status_after_the_rebuild(
    patient_user, alice_record, monkeypatch
):
    observations = Resource.objects.filter(patient=alice_record, resource_type="Observation").count()
    before = IndexToken.objects.count()
    # As a record stored before `status` was declared: its index holds everything but the term tokens.
    with monkeypatch.context() as patched:
        patched.setattr("records.reindex.index_terms", lambda r: replace(index_terms(r), terms=frozenset()))
        call_command("rebuild_blind_index", "--no-progress", stdout=StringIO())
    assert _final(patient_user, alice_record) == 0
    assert IndexToken.objects.count() < before

    out = StringIO()
    call_command("rebuild_blind_index", "--no-progress", stdout=out)

    assert _final(patient_user, alice_record) == observations > 0
    assert IndexToken.objects.count() == before
    assert out.getvalue().strip() == f"reindexed 1 record(s): {before} index tokens"
    logged = AccessLogEntry.objects.filter(
        action="records.reindex", actor="system:reindex", patient_ref=alice_record.pk
    )
    assert logged.count() == 2
    assert len(logged.first().resource_ids) == Resource.objects.filter(patient=alice_record).count()
