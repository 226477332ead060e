"""Bulk export downloads go through the gate: each patient in a file is decided again at download, and logged."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from api import bulk_export
from api.bulk_models import ExportSegment
from api.fhir.bulk import group_id
from audit.models import AccessLogEntry
from consent.gate import access_log_text
from consent.models import Grant
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest
from tests.api.conftest import bearer
from tests.api.test_fhir_bulk_export import _kickoff, _ndjson, _run
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db

DOWNLOAD = "records.export.download"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _has_category(resource: dict, code: str) -> bool:  # type: ignore[type-arg]
    codings = [c for category in resource.get("category", []) for c in category.get("coding", [])]
    return any((c.get("system"), c.get("code")) == (OBSERVATION_CATEGORY, code) for c in codings)


@pytest.fixture
def held(monkeypatch):  # type: ignore[no-untyped-def]
    """The broker seam held: the test runs the export's chunks itself."""
    monkeypatch.setattr(bulk_export.lifecycle, "export_publish", lambda *, job_id: True)


def _observation_file(api, token: str, status_url: str) -> str:  # type: ignore[no-untyped-def]
    output = orjson.loads(api.get(status_url, **bearer(token)).content)["output"]
    return next(o["url"] for o in output if o["type"] == "Observation")


def _two_patients(issue_grant, other_patient):  # type: ignore[no-untyped-def]
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(11, years=1)), actor="system:test", patient=other_patient)
    alice = issue_grant(resource_types=["Observation"])
    bob = issue_grant(patient=other_patient, by=other_patient.user, resource_types=["Observation"])
    return alice, bob


def test_a_download_is_logged_for_the_person_with_the_export_and_patient(
    api, clinician, patient_user, token_for, issue_grant, alice_record, held
):
    grant = issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, f"/fhir/Group/{group_id(clinician)}/$export")
    job = _run(status_url)
    url = _observation_file(api, token, status_url)

    lines = _ndjson(api, token, url)

    assert len(lines) == Resource.objects.filter(patient=alice_record, resource_type="Observation").count()
    entry = AccessLogEntry.objects.get(action=DOWNLOAD)
    assert entry.outcome == "permit"
    assert entry.actor == f"user:{clinician.pk}"
    assert entry.job_id == f"export:{job.pk}"
    assert entry.patient_ref == alice_record.pk
    assert entry.purpose == "TREAT"
    assert entry.grant_ref == grant.id
    text = access_log_text(patient_id=alice_record.pk, text=entry.query)
    assert text == f"$export download {job.pk} Observation.ndjson"
    # She sees it in her access log, in words.
    portal = Client()
    portal.force_login(patient_user)
    assert "Downloaded a bulk export file holding part of your record" in portal.get("/access/").content.decode()


def test_a_download_after_the_grant_is_revoked_serves_nothing_of_that_patient(
    api, clinician, patient_user, token_for, issue_grant, alice_record, held
):
    grant = issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, "/fhir/Patient/$export")
    job = _run(status_url)
    url = _observation_file(api, token, status_url)
    assert ExportSegment.objects.filter(job=job, patient=alice_record).exists()

    grant_revoke_signed(grant=grant, by=patient_user)

    assert _ndjson(api, token, url) == []
    denied = AccessLogEntry.objects.get(action=DOWNLOAD)
    assert (denied.outcome, denied.patient_ref, denied.job_id) == ("deny", alice_record.pk, f"export:{job.pk}")


def test_a_download_after_the_grant_expired_serves_nothing_of_that_patient(
    api, clinician, token_for, issue_grant, alice_record, held
):
    grant = issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, "/fhir/Patient/$export")
    _run(status_url)
    url = _observation_file(api, token, status_url)
    # The grant's end passes between the export and its download.
    Grant.objects.filter(pk=grant.pk).update(not_after=timezone.now() - timedelta(seconds=1))

    assert _ndjson(api, token, url) == []
    assert list(AccessLogEntry.objects.filter(action=DOWNLOAD).values_list("outcome", flat=True)) == ["deny"]


def test_a_revoked_patient_is_left_out_and_the_others_are_served(
    api, clinician, patient_user, token_for, issue_grant, alice_record, other_patient, held
):
    alice_grant, _ = _two_patients(issue_grant, other_patient)
    token = token_for(clinician)
    status_url = _kickoff(api, token, f"/fhir/Group/{group_id(clinician)}/$export?_type=Observation")
    _run(status_url)
    url = _observation_file(api, token, status_url)
    bobs = set(
        Resource.objects.filter(patient=other_patient, resource_type="Observation").values_list("fhir_id", flat=True)
    )
    assert (
        len(_ndjson(api, token, url))
        == len(bobs) + Resource.objects.filter(patient=alice_record, resource_type="Observation").count()
    )

    grant_revoke_signed(grant=alice_grant, by=patient_user)

    assert {line["id"] for line in _ndjson(api, token, url)} == bobs
    latest = AccessLogEntry.objects.filter(action=DOWNLOAD).order_by("-pk")[:2]
    assert {(e.patient_ref, e.outcome) for e in latest} == {(alice_record.pk, "deny"), (other_patient.pk, "permit")}


def test_a_grant_no_longer_covering_the_type_leaves_the_patient_out(
    api, clinician, patient_user, token_for, issue_grant, alice_record, held
):
    both = issue_grant(resource_types=["Observation", "Condition"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, "/fhir/Patient/$export?_type=Observation,Condition")
    _run(status_url)
    url = _observation_file(api, token, status_url)
    # She narrows her sharing: a new grant for Conditions only, the old one revoked.
    issue_grant(resource_types=["Condition"])
    grant_revoke_signed(grant=both, by=patient_user)

    assert _ndjson(api, token, url) == []
    assert AccessLogEntry.objects.get(action=DOWNLOAD).outcome == "deny"


def test_another_clinician_cannot_download_someone_elses_export(
    api, clinician, other_clinician, token_for, issue_grant, alice_record, held
):
    issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, "/fhir/Patient/$export")
    _run(status_url)
    url = _observation_file(api, token, status_url).split("testserver", 1)[1]

    response = api.get(url, **bearer(token_for(other_clinician)), HTTP_ACCEPT="application/fhir+ndjson")

    assert response.status_code == 404
    assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"
    assert not AccessLogEntry.objects.filter(action=DOWNLOAD).exists()


def test_a_grant_narrowed_to_a_category_since_the_export_serves_only_that_category(
    api, clinician, patient_user, token_for, issue_grant, alice_record, held
):
    broad = issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, "/fhir/Patient/$export?_type=Observation")
    _run(status_url)
    url = _observation_file(api, token, status_url)
    everything = _ndjson(api, token, url)
    # She narrows her sharing to laboratory results: a new grant, the broad one revoked.
    issue_grant(resource_types=["Observation"], categories=[f"{OBSERVATION_CATEGORY}|laboratory"])
    grant_revoke_signed(grant=broad, by=patient_user)

    served = _ndjson(api, token, url)

    labs = [line for line in everything if _has_category(line, "laboratory")]
    assert 0 < len(labs) < len(everything)
    assert [line["id"] for line in served] == [line["id"] for line in labs]
