"""Ingest into the encrypted store: Synthea bundles, ids, versions, canonical read-back, the write log."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import orjson
import pytest

from accounts.services import user_create
from audit.models import AccessLogEntry
from consent.gate import Caller, resource_read
from records.fhir import canonical_json, rewrite_references
from records.models import IndexToken, Patient, Resource, ResourceVersion
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db(transaction=False)


def _bundle(path: Path) -> dict:
    return json.loads(path.read_bytes())


def _observation(subject: str, value: float = 7.2, code: str = "4548-4") -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2021-03-04T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }


def _transaction(*entries: tuple[str, dict]) -> bytes:
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": url, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}
                for url, res in entries
            ],
        }
    ).encode()


def _patient_resource() -> dict:
    return {"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jane"]}], "gender": "female"}


def _record(name: str) -> tuple[Patient, object]:
    from records.services import patient_create

    user = user_create(username=name, password=None, role="patient")
    return patient_create(user=user), user


def test_all_forty_synthea_bundles_import_and_every_resource_reads_back_as_its_canonical_form(synthea_files):
    assert len(synthea_files) == 40
    total = 0
    for index, path in enumerate(synthea_files):
        bundle = _bundle(path)
        patient, user = _record(f"p{index}")
        result = fhir_ingest(payload=path.read_bytes(), actor="system:test", patient=patient)
        assert result.created == len(bundle["entry"])
        assert result.updated == 0
        assert list(result.patients) == [patient.pk]
        writes = result.patients[patient.pk]
        # The server names the record; the source's Patient takes the record's id, not its own.
        assert patient.fhir_id == str(patient.pk)
        assert writes.created[0] == f"Patient/{patient.fhir_id}/_history/1"
        server_refs = [ref.split("/_history/")[0] for ref in writes.created]
        mapping = {entry["fullUrl"]: ref for entry, ref in zip(bundle["entry"], server_refs, strict=True)}
        for entry, ref in zip(bundle["entry"], server_refs, strict=True):
            resource_type, resource_id = ref.split("/")
            stored = resource_read(
                caller=Caller(actor=user), patient=patient, resource_type=resource_type, resource_id=resource_id
            )
            served = orjson.loads(stored)
            expected = dict(rewrite_references(entry["resource"], mapping))
            expected["id"] = resource_id
            expected["meta"] = {
                **entry["resource"].get("meta", {}),
                "versionId": "1",
                "lastUpdated": served["meta"]["lastUpdated"],
            }
            assert stored == canonical_json(expected)
            assert "urn:uuid:" not in stored.decode()
        total += len(bundle["entry"])
    assert total == 6787
    assert Resource.objects.count() == 6787
    assert ResourceVersion.objects.count() == 6787
    assert Patient.objects.count() == 40
    assert AccessLogEntry.objects.filter(action="records.write", outcome="permit").count() == 40
    assert AccessLogEntry.objects.filter(action="records.read", outcome="permit").count() == 6787


def test_reimporting_a_bundle_updates_in_place_and_stores_no_new_version_when_nothing_changed(synthea_files):
    payload = synthea_files[0].read_bytes()
    patient, _ = _record("reimporter")
    first = fhir_ingest(payload=payload, actor="system:test", patient=patient)
    again = fhir_ingest(payload=payload, actor="system:test", patient=patient)
    assert again.created == 0
    assert again.updated == 0
    assert again.unchanged == first.created
    assert Resource.objects.count() == first.created
    assert ResourceVersion.objects.count() == first.created
    assert Patient.objects.count() == 1


def test_a_changed_resource_gets_a_new_version_and_every_version_stays_readable(patient, patient_user):
    first = fhir_ingest(
        payload=_transaction(("urn:uuid:obs-1", _observation("Patient/x", value=7.2))), actor="t", patient=patient
    )
    second = fhir_ingest(
        payload=_transaction(("urn:uuid:obs-1", _observation("Patient/x", value=8.1))), actor="t", patient=patient
    )
    (created,) = first.patients[patient.pk].created
    (updated,) = second.patients[patient.pk].updated
    name = created.split("/_history/")[0]
    assert created == f"{name}/_history/1"
    assert updated == f"{name}/_history/2"
    resource_type, resource_id = name.split("/")
    current = orjson.loads(
        resource_read(
            caller=Caller(actor=patient_user), patient=patient, resource_type=resource_type, resource_id=resource_id
        )
    )
    old = orjson.loads(
        resource_read(
            caller=Caller(actor=patient_user),
            patient=patient,
            resource_type=resource_type,
            resource_id=resource_id,
            version=1,
        )
    )
    assert current["valueQuantity"]["value"] == 8.1
    assert current["meta"]["versionId"] == "2"
    assert old["valueQuantity"]["value"] == 7.2
    assert old["meta"]["versionId"] == "1"
    assert Resource.objects.get(fhir_id=resource_id).current_version == 2


def test_the_payloads_patient_resource_takes_the_records_own_server_id(patient):
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    result = fhir_ingest(
        payload=_transaction((patient_url, _patient_resource()), ("urn:uuid:o1", _observation(patient_url))),
        actor=f"user:{patient.user_id}",
        patient=patient,
    )
    patient.refresh_from_db()
    assert list(result.patients) == [patient.pk]
    assert patient.fhir_id == str(patient.pk)
    assert result.patients[patient.pk].created[0] == f"Patient/{patient.fhir_id}/_history/1"
    assert Resource.objects.filter(patient=patient).count() == 2
    entry = AccessLogEntry.objects.get(action="records.write")
    assert entry.patient_ref == patient.pk
    assert entry.actor == f"user:{patient.user_id}"
    assert sorted(entry.resource_ids) == sorted(result.patients[patient.pk].created)


def test_a_patient_id_already_uploaded_by_someone_else_lands_in_the_uploaders_record_and_leaves_theirs_alone(
    patient, other_patient
):
    url = f"urn:uuid:{uuid.uuid4()}"
    fhir_ingest(payload=_transaction((url, _patient_resource())), actor="t", patient=other_patient)
    theirs = set(Resource.objects.filter(patient=other_patient).values_list("fhir_id", "current_version"))
    result = fhir_ingest(
        payload=_transaction((url, _patient_resource()), ("urn:uuid:o", _observation(url))),
        actor="t",
        patient=patient,
    )
    assert list(result.patients) == [patient.pk]
    assert result.created == 2
    assert set(Resource.objects.filter(patient=other_patient).values_list("fhir_id", "current_version")) == theirs
    assert Resource.objects.filter(patient=patient).count() == 2


def test_one_bundle_with_two_patients_is_two_sources_of_one_record_linked_to_its_own_patient(patient):
    first, second = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    result = fhir_ingest(
        payload=_transaction(
            (first, _patient_resource()),
            (second, _patient_resource()),
            ("urn:uuid:a", _observation(first)),
            ("urn:uuid:b", _observation(second)),
        ),
        actor="system:test",
        patient=patient,
    )
    assert list(result.patients) == [patient.pk]
    assert result.created == 4
    assert AccessLogEntry.objects.filter(action="records.write").count() == 1
    patients = Resource.objects.filter(patient=patient, resource_type="Patient")
    assert sorted(p.fhir_id == patient.fhir_id for p in patients) == [False, True]


def test_a_lone_resource_referring_to_the_record_joins_it(patient):
    single = json.dumps(_observation(f"Patient/{patient.fhir_id}")).encode()
    result = fhir_ingest(payload=single, actor="system:test", patient=patient)
    assert list(result.patients) == [patient.pk]
    assert Resource.objects.filter(patient=patient, resource_type="Observation").count() == 1


def test_the_first_source_is_claimed_once_and_a_later_write_leaves_the_records_row_alone(patient):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = f"urn:uuid:{uuid.uuid4()}"
    fhir_ingest(payload=_transaction((url, _patient_resource())), actor="t", patient=patient)
    patient.refresh_from_db()
    claimed = patient.primary_source
    assert claimed == f"|{url}"

    with CaptureQueriesContext(connection) as queries:
        fhir_ingest(payload=json.dumps(_observation(f"Patient/{patient.fhir_id}")).encode(), actor="t", patient=patient)
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "records_patient"')]
    assert updates == []
    patient.refresh_from_db()
    assert patient.primary_source == claimed


def test_import_id_names_a_lone_resource_as_the_import_will_store_it(patient):
    from records.ingest import import_id

    sent = {**_observation(f"Patient/{patient.fhir_id}"), "id": "job-output-1"}
    planned = import_id(owner=patient, resource=sent)
    result = fhir_ingest(payload=json.dumps(sent).encode(), actor="t", patient=patient)
    assert result.patients[patient.pk].created == [f"Observation/{planned}/_history/1"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {**sent, "id": "job-output-2"}}]}
    again = fhir_ingest(payload=json.dumps(bundle).encode(), actor="t", patient=patient)
    second = import_id(owner=patient, resource={**sent, "id": "job-output-2"})
    assert again.patients[patient.pk].created == [f"Observation/{second}/_history/1"]


def test_every_version_row_holds_ciphertext_only_and_index_tokens_are_written(patient):
    fhir_ingest(payload=_transaction(("urn:uuid:o", _observation("Patient/x"))), actor="t", patient=patient)
    row = ResourceVersion.objects.get()
    assert b"4548-4" not in bytes(row.ciphertext)
    assert b"Observation" not in bytes(row.ciphertext)
    assert bytes(row.wrapped_data_key) == b""  # the envelope's format 2: no data key of its own
    # code, and the effective date at year, month and day granularity
    assert IndexToken.objects.filter(resource=row.resource).count() >= 4
