"""A page of current versions is read from the copy each resource row carries (Resource.current_ciphertext).

Over HTTP, as a clinician with a live grant: the whole-type search (the page read ahead with the record) and a
search with criteria (its page on its own) both open the copy, not the version row: a byte flipped in one
resource's copy fails that resource alone (listed as left out) while its version row still reads. A row without
a copy (written before it existed) is read from its version row. Rolling a row back fails however the copy is set.
"""

from __future__ import annotations

import importlib

import orjson
import pytest
from django.db import connection

from records.demo import generate_patient_bundle
from records.ingest.rows import FEW_ROWS
from records.models import Resource, ResourceVersion
from records.services import fhir_ingest
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

WHOLE_TYPE = "/fhir/Observation?patient={}&_count=100"
WITH_CRITERIA = "/fhir/Observation?patient={}&_lastUpdated=gt2000-01-01&_count=100"  # storage order: pages.stored_page


def _flip(blob: bytes, at: int = 20) -> bytes:
    raw = bytearray(blob)
    raw[at] ^= 0x01
    return bytes(raw)


def _search(api, token: str, url: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    response = api.get(url, **bearer(token))
    assert response.status_code == 200, response.content
    return orjson.loads(response.content)


def _ids(bundle: dict) -> set[str]:  # type: ignore[type-arg]
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "Observation"}


def _left_out(bundle: dict) -> str:  # type: ignore[type-arg]
    outcomes = [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "OperationOutcome"]
    return orjson.dumps(outcomes).decode()


@pytest.fixture
def searched(api, clinician, token_for, issue_grant, alice_record):  # type: ignore[no-untyped-def]
    issue_grant()
    token = token_for(clinician)
    patient_id = Resource.objects.get(patient=alice_record, resource_type="Patient").fhir_id
    observations = Resource.objects.filter(patient=alice_record, resource_type="Observation").order_by("pk")
    assert observations.count() > 1
    return token, patient_id, observations


def test_ingest_writes_the_copy_of_every_current_version_by_the_few_row_insert_and_by_copy(alice_record, other_patient):  # type: ignore[no-untyped-def]
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(11, years=10)), actor="system:test", patient=other_patient)
    few, many = (Resource.objects.filter(patient=p) for p in (alice_record, other_patient))
    assert 0 < few.count() <= FEW_ROWS < many.count()  # records.ingest.rows: INSERT ... unnest, then COPY
    for row in [*few, *many]:
        current = ResourceVersion.objects.get(resource=row, version=row.current_version)
        assert bytes(row.current_ciphertext) == bytes(current.ciphertext)
        assert bytes(row.current_wrapped_data_key) == bytes(current.wrapped_data_key)


@pytest.mark.parametrize("url", [WHOLE_TYPE, WITH_CRITERIA], ids=["whole type", "with criteria"])
def test_a_flipped_byte_in_the_copy_fails_that_resource_alone_though_its_version_row_is_intact(api, searched, url):  # type: ignore[no-untyped-def]
    token, patient_id, observations = searched
    before = _ids(_search(api, token, url.format(patient_id)))
    damaged = observations.first()
    Resource.objects.filter(pk=damaged.pk).update(current_ciphertext=_flip(bytes(damaged.current_ciphertext)))

    bundle = _search(api, token, url.format(patient_id))

    assert _ids(bundle) == before - {damaged.fhir_id}
    assert damaged.fhir_id in _left_out(bundle)
    # The version row was not touched: the read by id (from the version row) still opens it.
    read = api.get(f"/fhir/Observation/{damaged.fhir_id}", **bearer(token))
    assert read.status_code == 200
    assert orjson.loads(read.content)["id"] == damaged.fhir_id


@pytest.mark.parametrize("url", [WHOLE_TYPE, WITH_CRITERIA], ids=["whole type", "with criteria"])
def test_a_row_without_a_copy_is_read_from_its_version_row(api, searched, url):  # type: ignore[no-untyped-def]
    token, patient_id, observations = searched
    before = _search(api, token, url.format(patient_id))
    Resource.objects.filter(pk__in=[r.pk for r in observations[:3]]).update(
        current_ciphertext=None, current_wrapped_data_key=None
    )
    after = _search(api, token, url.format(patient_id))
    assert [e["resource"] for e in after["entry"]] == [e["resource"] for e in before["entry"]]
    # ... and a version row damaged under a missing copy fails that resource, so the fallback is what was read.
    first = observations.first()
    version = ResourceVersion.objects.get(resource=first, version=first.current_version)
    ResourceVersion.objects.filter(pk=version.pk).update(ciphertext=_flip(bytes(version.ciphertext)))
    assert _ids(_search(api, token, url.format(patient_id))) == _ids(before) - {first.fhir_id}


def test_the_migrations_backfill_copies_each_current_version(alice_record):
    backfill = importlib.import_module("records.migrations.0006_resource_current_ciphertext").BACKFILL
    rows = Resource.objects.filter(patient=alice_record)
    expected = {r.pk: (bytes(r.current_ciphertext), bytes(r.current_wrapped_data_key)) for r in rows}
    rows.update(current_ciphertext=None, current_wrapped_data_key=None)
    with connection.cursor() as cursor:
        cursor.execute(backfill)
    copied = {r.pk: (bytes(r.current_ciphertext), bytes(r.current_wrapped_data_key)) for r in rows}
    assert copied == expected


@pytest.mark.parametrize("copy", ["kept", "moved back too"])
def test_a_row_rolled_back_fails_in_a_search_however_its_copy_is_set(api, searched, patient, copy):  # type: ignore[no-untyped-def]
    token, patient_id, observations = searched
    resource = observations.first()
    newer = orjson.loads(api.get(f"/fhir/Observation/{resource.fhir_id}", **bearer(token)).content)
    newer["status"] = "amended"
    # Version 2, stored as its owner stores it (the clinician's grant is read-only).
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": newer, "request": {"method": "PUT", "url": f"Observation/{resource.fhir_id}"}}
    ]}  # fmt: skip
    fhir_ingest(payload=orjson.dumps(bundle), actor="system:test", patient=patient)
    resource.refresh_from_db()
    assert resource.current_version == 2
    v1, v2 = ResourceVersion.objects.filter(resource=resource).order_by("version")
    assert bytes(resource.current_ciphertext) == bytes(v2.ciphertext)  # an update moves the copy on (bulk_update)
    assert _ids(_search(api, token, WHOLE_TYPE.format(patient_id))) >= {resource.fhir_id}
    rolled = {"current_version": 1}
    if copy == "moved back too":  # an insider who knows of the copy puts version 1's there as well
        rolled |= {"current_ciphertext": bytes(v1.ciphertext), "current_wrapped_data_key": bytes(v1.wrapped_data_key)}
    Resource.objects.filter(pk=resource.pk).update(**rolled)

    bundle = _search(api, token, WHOLE_TYPE.format(patient_id))

    assert resource.fhir_id not in _ids(bundle)
    assert resource.fhir_id in _left_out(bundle)
