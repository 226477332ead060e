"""A read that fails its integrity check: an integrity entry in the patient's log, and one bad resource fails
only itself (a search page and an export carry the rest and say what they left out)."""

from __future__ import annotations

import json

import pytest

from audit.models import AccessLogEntry
from consent.gate import Caller, SearchCriteria, record_export, resource_read, resource_search_counted
from healthledger.errors import IntegrityFailure
from records.models import Resource
from tests.records.test_store_tamper import _flip, _import, _version

pytestmark = pytest.mark.django_db


def _corrupt(resource_id: str) -> None:
    """One flipped byte in the current version, where reads find it (its version row) and where a search's page
    does (the copy its resource row carries)."""
    row = _version(resource_id)
    row.ciphertext = _flip(bytes(row.ciphertext), 20)
    row.save()
    Resource.objects.filter(pk=row.resource_id).update(current_ciphertext=row.ciphertext)


def test_a_tampered_read_writes_an_integrity_entry_and_no_read(patient, patient_user):
    ((resource_type, resource_id),) = _import(patient, 1.0)
    _corrupt(resource_id)

    with pytest.raises(IntegrityFailure):
        resource_read(
            caller=Caller(actor=patient_user), patient=patient, resource_type=resource_type, resource_id=resource_id
        )

    [entry] = AccessLogEntry.objects.filter(action="records.integrity")
    assert (entry.patient_ref, entry.outcome, entry.actor) == (patient.pk, "deny", f"user:{patient_user.pk}")
    assert entry.resource_ids == [f"Observation/{resource_id}/_history/1"]
    assert not AccessLogEntry.objects.filter(action="records.read").exists()


def test_a_search_page_serves_the_rest_and_names_the_tampered_one(patient, patient_user):
    observations = _import(patient, 1.0, 2.0, 3.0)
    bad = observations[1][1]
    _corrupt(bad)

    page = resource_search_counted(
        caller=Caller(actor=patient_user),
        patient=patient,
        resource_type="Observation",
        criteria=SearchCriteria(),
        query="Observation?",
        partial=True,
    )

    assert len(page.bodies) == len(page.references) == 2
    assert page.failed == (f"Observation/{bad}/_history/1",)
    assert all(bad not in ref for ref in page.references)
    [search] = AccessLogEntry.objects.filter(action="records.search")
    assert search.resource_ids == page.references  # the entry names exactly what was served
    [integrity] = AccessLogEntry.objects.filter(action="records.integrity")
    assert integrity.resource_ids == list(page.failed)


def test_an_export_skips_the_tampered_resource_and_says_so_in_the_bundle(patient, patient_user):
    observations = _import(patient, 1.0, 2.0)
    bad = observations[0][1]
    _corrupt(bad)

    bundle = json.loads(record_export(caller=Caller(actor=patient_user), patient=patient))

    resources = [entry["resource"] for entry in bundle["entry"]]
    assert [r["resourceType"] for r in resources].count("Observation") == 1
    [outcome] = [r for r in resources if r["resourceType"] == "OperationOutcome"]
    assert outcome["issue"][0]["severity"] == "warning"
    assert f"Observation/{bad}/_history/1" in outcome["issue"][0]["diagnostics"]
    [export] = AccessLogEntry.objects.filter(action="records.export")
    assert all(bad not in ref for ref in export.resource_ids)
    assert AccessLogEntry.objects.filter(action="records.integrity").count() == 1


def test_without_partial_a_search_fails_whole_logs_the_finding_and_no_read(patient, patient_user):
    observations = _import(patient, 1.0, 2.0)
    _corrupt(observations[1][1])

    with pytest.raises(IntegrityFailure):
        resource_search_counted(
            caller=Caller(actor=patient_user), patient=patient, resource_type="Observation", criteria=SearchCriteria()
        )

    assert not AccessLogEntry.objects.filter(action="records.search").exists()
    assert AccessLogEntry.objects.filter(action="records.integrity").count() == 1
