"""Who owns written data: ids in a source or a request never decide it, and never overwrite another resource.

A clinician's create ignores the id it sends (FHIR: the server assigns ids on create),
so it can never land on a resource the patient imported; an upload always goes into the
uploader's own record; a record holds several providers' exports; and the patient's own
export re-imports into a fresh account unchanged.
"""

from __future__ import annotations

import json

import orjson
import pytest

from consent.gate import Caller, record_export
from records.models import Resource, ResourceVersion
from records.services import fhir_ingest, patient_create
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db

FHIR = "application/fhir+json"


def _observation(subject: str, value: float, rid: str | None = None) -> dict:  # type: ignore[type-arg]
    resource: dict = {  # type: ignore[type-arg]
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2025-07-01T09:30:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    if rid:
        resource["id"] = rid
    return resource


def _ehr_export(patient_id: str, observations: dict[str, float]) -> bytes:
    """An EHR-shaped collection Bundle with plain (not urn:uuid) ids, as many exports write them."""
    entries = [{"fullUrl": f"Patient/{patient_id}", "resource": {"resourceType": "Patient", "id": patient_id}}]
    for rid, value in observations.items():
        entries.append({"fullUrl": f"Observation/{rid}", "resource": _observation(f"Patient/{patient_id}", value, rid)})
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()


def _values(record) -> list[float]:  # type: ignore[no-untyped-def]
    export = json.loads(record_export(caller=Caller(actor=record.user), patient=record))
    return sorted(
        e["resource"]["valueQuantity"]["value"]
        for e in export["entry"]
        if e["resource"]["resourceType"] == "Observation" and "valueQuantity" in e["resource"]
    )


def test_a_clinicians_create_with_the_id_of_an_imported_resource_makes_a_new_one_and_overwrites_nothing(
    api, clinician, token_for, issue_grant, patient
):
    issue_grant(actions=["read", "write"])  # alice's record holds a generated year of data already
    result = fhir_ingest(payload=_ehr_export("ehr-pat-1", {"ehr-obs-1": 61}), actor="t", patient=patient)
    (obs_ref,) = [r for r in result.patients[patient.pk].created if r.startswith("Observation/")]
    imported = Resource.objects.get(resource_type="Observation", fhir_id=obs_ref.split("/")[1])
    before = len(_values(patient))
    token = token_for(clinician)

    for rid in ("ehr-obs-1", imported.fhir_id):  # the id in the source, and the server's own id
        response = api.post(
            "/fhir/Observation",
            orjson.dumps(_observation(f"Patient/{patient.fhir_id}", 180, rid)),
            content_type=FHIR,
            **bearer(token),
        )
        assert response.status_code == 201
        created = orjson.loads(response.content)
        assert created["id"] not in (rid, imported.fhir_id)
        assert created["meta"]["versionId"] == "1"

    imported.refresh_from_db()
    assert imported.current_version == 1
    assert ResourceVersion.objects.filter(resource=imported).count() == 1
    read = api.get(f"/fhir/Observation/{imported.fhir_id}", **bearer(token))
    assert orjson.loads(read.content)["valueQuantity"]["value"] == 61
    assert len(_values(patient)) == before + 2


def test_a_second_providers_export_joins_the_record_and_reimporting_either_changes_nothing(patient):
    first = fhir_ingest(payload=_ehr_export("p1", {"o1": 61, "o2": 62}), actor="t", patient=patient)
    # Another provider: its own Patient id, and an Observation id that clashes with the first provider's.
    second = fhir_ingest(payload=_ehr_export("mrn-77", {"o1": 99}), actor="t", patient=patient)
    assert (first.created, second.created) == (3, 2)
    assert _values(patient) == [61, 62, 99]

    patients = {p.fhir_id: p for p in Resource.objects.filter(patient=patient, resource_type="Patient")}
    assert patient.fhir_id in patients
    (other_id,) = set(patients) - {patient.fhir_id}
    export = json.loads(record_export(caller=Caller(actor=patient.user), patient=patient))
    linked = next(e["resource"] for e in export["entry"] if e["resource"].get("id") == other_id)
    assert linked["link"] == [{"other": {"reference": f"Patient/{patient.fhir_id}"}, "type": "seealso"}]
    second_obs = next(
        e["resource"] for e in export["entry"] if e["resource"].get("valueQuantity", {}).get("value") == 99
    )
    assert second_obs["subject"] == {"reference": f"Patient/{other_id}"}

    again = [
        fhir_ingest(payload=_ehr_export("p1", {"o1": 61, "o2": 62}), actor="t", patient=patient),
        fhir_ingest(payload=_ehr_export("mrn-77", {"o1": 99}), actor="t", patient=patient),
    ]
    assert [(r.created, r.updated, r.unchanged) for r in again] == [(0, 0, 3), (0, 0, 2)]


def test_the_portals_export_reimports_into_a_fresh_account_unchanged_and_into_its_own_account_as_no_change(
    patient, synthea_files
):
    from accounts.services import user_create

    fhir_ingest(payload=synthea_files[5].read_bytes(), actor="t", patient=patient)
    exported = record_export(caller=Caller(actor=patient.user), patient=patient)

    same = fhir_ingest(payload=exported, actor="t", patient=patient)
    assert (same.created, same.updated) == (0, 0)

    fresh = patient_create(user=user_create(username="fresh", password=None, role="patient"))
    result = fhir_ingest(payload=exported, actor="t", patient=fresh)
    original = json.loads(exported)["entry"]
    assert result.created == len(original)
    copied = json.loads(record_export(caller=Caller(actor=fresh.user), patient=fresh))["entry"]

    def normalised(entries: list[dict], record_id: str) -> list[str]:  # type: ignore[type-arg]
        # Equal up to the server's own ids and version metadata: map each id to its position.
        ids = {f"{e['resource']['resourceType']}/{e['resource']['id']}": f"#{n}" for n, e in enumerate(entries)}
        out = []
        for entry in entries:
            text = json.dumps({k: v for k, v in entry["resource"].items() if k not in ("id", "meta")}, sort_keys=True)
            for ref, placeholder in ids.items():
                text = text.replace(f'"{ref}"', f'"{placeholder}"')
            out.append(text)
        return out

    by_type = sorted(copied, key=lambda e: (e["resource"]["resourceType"], e["resource"]["id"]))
    assert sorted(normalised(copied, fresh.fhir_id)) == sorted(normalised(original, patient.fhir_id))
    assert len(by_type) == len(original)


def test_a_patients_upload_of_another_records_server_id_goes_into_her_own_record(patient, other_patient):
    fhir_ingest(payload=_ehr_export("bob-1", {"b1": 70}), actor="t", patient=other_patient)
    bobs = set(Resource.objects.filter(patient=other_patient).values_list("fhir_id", "current_version"))
    forged = _ehr_export(other_patient.fhir_id, {"x": 1})
    result = fhir_ingest(payload=forged, actor="t", patient=patient)
    assert list(result.patients) == [patient.pk]
    assert set(Resource.objects.filter(patient=other_patient).values_list("fhir_id", "current_version")) == bobs
    assert _values(patient) == [1]
