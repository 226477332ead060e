"""A search's record and its page in one statement: the page only for a caller holding a live grant, equal to
what stored_page_of_type reads on its own."""

from __future__ import annotations

import orjson
import pytest
from django.db import connection

from records.demo import generate_patient_bundle
from records.selectors import RowExtra, patient_locate_with_type_page, stored_page_of_type
from records.services import fhir_ingest

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="one statement on PostgreSQL; two elsewhere"),
]


@pytest.fixture
def record(patient):  # type: ignore[no-untyped-def]
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(11, years=4)), actor="system:test", patient=patient)
    patient.refresh_from_db()
    return patient


# Stand-ins for the gate's extras: the last one is what the page is read under (its live grants).
GRANTS = RowExtra(sql="(SELECT CASE WHEN %s THEN '[]' END)", params=(True,))
NO_GRANTS = RowExtra(sql="(SELECT CASE WHEN %s THEN '[]' END)", params=(False,))
IDENTITY = RowExtra(sql="(SELECT %s::text)", params=("who",))


@pytest.mark.parametrize(("limit", "offset"), [(10, 0), (10, 7), (1000, 0), (5, 10_000)])
def test_the_page_read_with_the_record_is_the_page_read_alone(record, limit, offset):
    found = patient_locate_with_type_page(
        fhir_id=record.fhir_id, extras=(IDENTITY, GRANTS), resource_type="Observation", limit=limit, offset=offset
    )
    assert found is not None
    patient, values, page = found
    alone = stored_page_of_type(patient=record, resource_type="Observation", limit=limit, offset=offset)

    assert patient.pk == record.pk
    assert bytes(patient.wrapped_key) == bytes(record.wrapped_key)
    assert values == ("who", "[]")
    assert page is not None
    assert (page.resource_type, page.limit, page.offset) == ("Observation", limit, offset)
    assert (page.stored, page.total) == alone


def test_no_page_is_read_for_a_caller_without_live_grants(record):
    found = patient_locate_with_type_page(
        fhir_id=record.fhir_id, extras=(IDENTITY, NO_GRANTS), resource_type="Observation", limit=10, offset=0
    )
    assert found is not None
    patient, values, page = found
    assert patient.pk == record.pk
    assert values == ("who", None)
    assert page is None


def test_a_record_that_does_not_exist_is_none(record):
    assert (
        patient_locate_with_type_page(
            fhir_id="no-such-patient", extras=(IDENTITY, GRANTS), resource_type="Observation", limit=10, offset=0
        )
        is None
    )
