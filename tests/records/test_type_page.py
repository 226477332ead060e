"""A type page opens the same whichever way its record was loaded: located with its key, or without it."""

from __future__ import annotations

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from records.demo import generate_patient_bundle
from records.models import Patient
from records.selectors import patient_locate_by_fhir_id, stored_page_of_type
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def record(patient):  # type: ignore[no-untyped-def]
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(7, years=3)), actor="system:test", patient=patient)
    patient.refresh_from_db()
    return patient


def test_a_located_record_reads_its_page_in_one_statement_and_an_unkeyed_one_completes_its_key_first(record):
    located, _ = patient_locate_by_fhir_id(fhir_id=record.fhir_id)
    with CaptureQueriesContext(connection) as located_queries:
        page, total = stored_page_of_type(patient=located, resource_type="Observation", limit=20, offset=5)
    unkeyed = Patient.objects.only("id").get(pk=record.pk)
    with CaptureQueriesContext(connection) as unkeyed_queries:
        again, total_again = stored_page_of_type(patient=unkeyed, resource_type="Observation", limit=20, offset=5)

    assert len(located_queries) == 1
    assert len(unkeyed_queries) == 2  # the record's key, then the page
    assert (page, total) == (again, total_again)
    assert len(page) == 20
    assert total > 25
    assert {item.wrapped_patient_key for item in page} == {bytes(record.wrapped_key)}
    assert {(item.patient_id, item.resource_type, item.master_key_id) for item in page} == {
        (record.pk, "Observation", record.master_key_id)
    }
    assert all(item.version == item.current_version for item in page)
