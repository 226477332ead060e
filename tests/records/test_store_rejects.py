"""Every bad input is refused whole, with its reasons, and leaves nothing behind."""

from __future__ import annotations

import json
import uuid

import pytest

from audit.models import AccessLogEntry
from healthledger.errors import DocumentTooLarge, InvalidFHIR
from records.models import IndexToken, Patient, Resource, ResourceVersion
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db

PATIENT_URL = "urn:uuid:3c9e4a10-6a0b-4f61-8d7e-5b2a9c1d0e11"


def _observation(subject: str | None = PATIENT_URL, **extra: object) -> dict:
    resource: dict = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        **extra,
    }
    if subject:
        resource["subject"] = {"reference": subject}
    return resource


def _bundle(*resources: dict, kind: str = "transaction", method: str = "POST") -> bytes:
    entries = []
    for n, resource in enumerate(resources):
        url = PATIENT_URL if resource["resourceType"] == "Patient" and n == 0 else f"urn:uuid:{uuid.uuid4()}"
        entries.append(
            {"fullUrl": url, "resource": resource, "request": {"method": method, "url": resource["resourceType"]}}
        )
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": entries}).encode()


PATIENT = {"resourceType": "Patient", "gender": "female"}

BAD = {
    "not JSON": b"{not json",
    "a JSON array": b"[]",
    "an unknown resource type": json.dumps({"resourceType": "Spaceship"}).encode(),
    "an invalid element deep in a bundle": _bundle(PATIENT, _observation(), _observation(status="nope")),
    "an unknown element": _bundle(PATIENT, _observation(colour="blue")),
    "an unresolved urn:uuid reference": _bundle(PATIENT, _observation(subject=f"urn:uuid:{uuid.uuid4()}")),
    "a collection bundle whose entries carry requests": _bundle(PATIENT, kind="collection"),
    "a searchset bundle": _bundle(PATIENT, kind="searchset"),
}


def _counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Patient, Resource, ResourceVersion, IndexToken, AccessLogEntry))


@pytest.mark.parametrize("payload", BAD.values(), ids=BAD.keys())
def test_bad_input_is_rejected_with_reasons_and_nothing_is_stored(payload, patient):
    before = _counts()
    with pytest.raises(InvalidFHIR) as caught:
        fhir_ingest(payload=payload, actor="system:test", patient=patient)
    assert caught.value.status == 400
    assert caught.value.issues
    assert all(issue.diagnostics for issue in caught.value.issues)
    assert _counts() == before


def test_a_document_over_the_size_limit_is_refused_with_413(settings, patient):
    settings.FHIR_MAX_DOCUMENT_BYTES = 2048
    before = _counts()
    with pytest.raises(DocumentTooLarge) as caught:
        fhir_ingest(payload=_bundle(PATIENT, *[_observation() for _ in range(20)]), actor="t", patient=patient)
    assert caught.value.status == 413
    assert _counts() == before


def test_a_bad_last_entry_leaves_no_earlier_entry_behind(synthea_files, patient):
    bundle = json.loads(synthea_files[2].read_bytes())
    bundle["entry"][-1]["resource"]["resourceType"] = "NotAType"
    before = _counts()
    with pytest.raises(InvalidFHIR) as caught:
        fhir_ingest(payload=json.dumps(bundle).encode(), actor="t", patient=patient)
    assert any(f"Bundle.entry[{len(bundle['entry']) - 1}]" in e for i in caught.value.issues for e in i.expression)
    assert _counts() == before


def test_a_created_resource_naming_another_stored_record_is_refused(patient, other_patient):
    from records.ingest import IdMode

    before = _counts()
    with pytest.raises(InvalidFHIR) as caught:
        fhir_ingest(
            payload=json.dumps(_observation(f"Patient/{other_patient.fhir_id}")).encode(),
            actor="t",
            patient=patient,
            mode=IdMode.CREATE,
        )
    assert caught.value.issues[0].code == "business-rule"
    assert _counts() == before


def test_a_failure_after_planning_rolls_back_every_row_of_the_document(monkeypatch, synthea_files, patient):
    import records.ingest

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(records.ingest, "_rows_insert", explode)
    before = _counts()
    with pytest.raises(RuntimeError):
        fhir_ingest(payload=synthea_files[3].read_bytes(), actor="t", patient=patient)
    assert _counts() == before
