"""FHIR Bulk Data export over HTTP: kick-off, poll, manifest, download, revocation mid-export, cancellation, expiry."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone
from fhir.resources.R4B.operationdefinition import OperationDefinition

from api import bulk_export
from api.bulk_models import ExportJob, ExportSegment
from api.fhir.bulk import group_id
from audit.models import AccessLogEntry
from records.models import Resource
from tests.api.conftest import bearer
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db

ASYNC = {"HTTP_PREFER": "respond-async", "HTTP_ACCEPT": "application/fhir+json"}


@pytest.fixture
def held(monkeypatch):  # type: ignore[no-untyped-def]
    """The broker seam held: accepted exports are recorded, and the test runs their chunks itself."""
    published: list[str] = []
    monkeypatch.setattr(
        bulk_export.lifecycle, "export_publish", lambda *, job_id: published.append(str(job_id)) or True
    )
    return published


def _kickoff(api: Client, token: str, url: str, **extra: str) -> str:
    response = api.get(url, **bearer(token), **ASYNC, **extra)
    assert response.status_code == 202, response.content
    location = response["Content-Location"]
    assert "/fhir/bulk-status/" in location
    return location.split("testserver", 1)[1]


def _run(status_url: str) -> ExportJob:
    job_id = status_url.rsplit("/", 1)[1]
    assert bulk_export.export_step(job_id=job_id, budget_seconds=60)
    return ExportJob.objects.get(pk=job_id)


def _ndjson(api: Client, token: str, url: str) -> list[dict]:  # type: ignore[type-arg]
    response = api.get(url.split("testserver", 1)[1], **bearer(token), HTTP_ACCEPT="application/fhir+ndjson")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+ndjson"
    body = b"".join(response.streaming_content)
    return [orjson.loads(line) for line in body.splitlines() if line]


def test_a_group_export_runs_polls_and_serves_what_the_grant_covers(
    api, clinician, token_for, issue_grant, alice_record, other_patient, held
):
    issue_grant(resource_types=["Observation", "Condition"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, f"/fhir/Group/{group_id(clinician)}/$export")

    polled = api.get(status_url, **bearer(token))
    assert polled.status_code == 202
    assert polled["Retry-After"] == "2"
    assert polled["X-Progress"] == "0 of 1 record(s), 0 resource(s) exported"

    job = _run(status_url)
    manifest = api.get(status_url, **bearer(token))
    assert manifest.status_code == 200
    assert "Expires" in manifest
    body = orjson.loads(manifest.content)
    assert body["requiresAccessToken"] is True
    assert body["error"] == []
    expected = {
        t: Resource.objects.filter(patient=alice_record, resource_type=t).count() for t in ("Condition", "Observation")
    }
    assert {o["type"]: o["count"] for o in body["output"]} == expected
    for output in body["output"]:
        lines = _ndjson(api, token, output["url"])
        assert len(lines) == output["count"]
        assert {line["resourceType"] for line in lines} == {output["type"]}
        stored = set(
            Resource.objects.filter(patient=alice_record, resource_type=output["type"]).values_list(
                "fhir_id", flat=True
            )
        )
        assert {line["id"] for line in lines} == stored
    # Every exported resource was read through the gate and logged under the export's id.
    logged = AccessLogEntry.objects.filter(job_id=f"export:{job.pk}", action="records.search", outcome="permit")
    ids = {ref.split("/")[1] for entry in logged for ref in entry.resource_ids}
    assert len(ids) == sum(expected.values())
    assert {entry.patient_ref for entry in logged} == {alice_record.pk}
    # At rest the files are ciphertext: no resource id appears in a sealed segment.
    an_id = next(iter(ids)).encode()
    assert all(an_id not in bytes(s.sealed) for s in ExportSegment.objects.filter(job=job))


def test_chunks_keep_memory_flat_and_resume_where_they_stopped(
    api, clinician, token_for, issue_grant, alice_record, held, monkeypatch
):
    monkeypatch.setattr(bulk_export.worker, "EXPORT_CHUNK", 7)
    issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, "/fhir/Patient/$export?_type=Observation")
    job_id = status_url.rsplit("/", 1)[1]
    while not bulk_export.export_step(job_id=job_id, max_chunks=1):
        pass
    total = Resource.objects.filter(patient=alice_record, resource_type="Observation").count()
    segments = ExportSegment.objects.filter(job_id=job_id)
    assert max(s.count for s in segments) == 7
    assert sum(s.count for s in segments) == total
    body = orjson.loads(api.get(status_url, **bearer(token)).content)
    lines = _ndjson(api, token, body["output"][0]["url"])
    assert len({line["id"] for line in lines}) == total == len(lines)


def test_a_grant_revoked_mid_export_stops_the_rest_of_that_patients_export(
    api, clinician, patient_user, token_for, issue_grant, alice_record, held, monkeypatch
):
    monkeypatch.setattr(bulk_export.worker, "EXPORT_CHUNK", 5)
    grant = issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, f"/fhir/Group/{group_id(clinician)}/$export")
    job_id = status_url.rsplit("/", 1)[1]
    bulk_export.export_step(job_id=job_id, max_chunks=1)  # types decided, one page of 5 read
    assert ExportJob.objects.get(pk=job_id).resources == 5

    grant_revoke_signed(grant=grant, by=patient_user)
    job = _run(status_url)

    assert job.resources == 5
    assert job.stopped == [str(alice_record.pk)]
    body = orjson.loads(api.get(status_url, **bearer(token)).content)
    # The 5 read before the revocation are hers, and a download now serves none of them: none is listed.
    assert body["output"] == []
    errors = _ndjson(api, token, body["error"][0]["url"])
    assert errors[0]["issue"][0]["code"] == "forbidden"
    assert AccessLogEntry.objects.filter(job_id=f"export:{job_id}", outcome="deny").count() == 1


def test_a_cancelled_export_stops_and_its_files_are_gone(api, clinician, token_for, issue_grant, alice_record, held):
    issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, "/fhir/Patient/$export")
    job = _run(status_url)
    assert ExportSegment.objects.filter(job=job).exists()
    files = orjson.loads(api.get(status_url, **bearer(token)).content)["output"]

    assert api.delete(status_url, **bearer(token)).status_code == 202

    assert not ExportSegment.objects.filter(job=job).exists()
    assert api.get(status_url, **bearer(token)).status_code == 404
    assert api.get(files[0]["url"].split("testserver", 1)[1], **bearer(token)).status_code == 404
    assert api.delete(status_url, **bearer(token)).status_code == 404


def test_cancelling_mid_export_stops_the_worker(
    api, clinician, token_for, issue_grant, alice_record, held, monkeypatch
):
    monkeypatch.setattr(bulk_export.worker, "EXPORT_CHUNK", 3)
    issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, "/fhir/Patient/$export")
    job_id = status_url.rsplit("/", 1)[1]
    bulk_export.export_step(job_id=job_id, max_chunks=2)
    assert api.delete(status_url, **bearer(token)).status_code == 202
    assert bulk_export.export_step(job_id=job_id) is True  # nothing left to do
    assert ExportJob.objects.get(pk=job_id).status == "cancelled"
    assert not ExportSegment.objects.filter(job_id=job_id).exists()


def test_someone_without_a_grant_exports_nothing_and_sees_no_one_elses_export(
    api, clinician, other_clinician, token_for, issue_grant, alice_record, held
):
    issue_grant(resource_types=["Observation"])
    stranger = token_for(other_clinician)
    # Another's Group does not exist for them.
    assert api.get(f"/fhir/Group/{group_id(clinician)}/$export", **bearer(stranger), **ASYNC).status_code == 404
    assert api.get(f"/fhir/Group/{group_id(clinician)}", **bearer(stranger)).status_code == 404
    own = api.get(f"/fhir/Group/{group_id(other_clinician)}", **bearer(stranger))
    assert orjson.loads(own.content)["quantity"] == 0
    # Their own export is empty.
    status_url = _kickoff(api, stranger, "/fhir/Patient/$export")
    _run(status_url)
    assert orjson.loads(api.get(status_url, **bearer(stranger)).content)["output"] == []
    assert not AccessLogEntry.objects.filter(actor__startswith="job:export:", patient_ref=alice_record.pk).exists()
    # The clinician's export, its status and files, answer her client only.
    token = token_for(clinician)
    theirs = _kickoff(api, token, "/fhir/Patient/$export")
    _run(theirs)
    url = orjson.loads(api.get(theirs, **bearer(token)).content)["output"][0]["url"].split("testserver", 1)[1]
    for other in (stranger, token_for(clinician)):  # another user; the same user through another client
        assert api.get(theirs, **bearer(other)).status_code == 404
        assert api.get(url, **bearer(other)).status_code == 404
        assert api.delete(theirs, **bearer(other)).status_code == 404
    assert api.get(url).status_code == 401


def test_a_patient_exports_her_own_record(api, patient_user, token_for, alice_record, held):
    token = token_for(patient_user)
    status_url = _kickoff(api, token, "/fhir/Patient/$export?_type=Patient,Condition")
    _run(status_url)
    body = orjson.loads(api.get(status_url, **bearer(token)).content)
    counts = {o["type"]: o["count"] for o in body["output"]}
    assert counts == {
        t: Resource.objects.filter(patient=alice_record, resource_type=t).count() for t in ("Condition", "Patient")
    }
    # A patient has no Group of grants.
    assert api.get(f"/fhir/Group/{group_id(patient_user)}/$export", **bearer(token), **ASYNC).status_code == 404


def test_since_and_type_filter_narrow_the_export(api, clinician, token_for, issue_grant, alice_record, held):
    issue_grant(resource_types=["Observation", "Condition"])
    token = token_for(clinician)
    future = (timezone.now() + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    status_url = _kickoff(api, token, f"/fhir/Patient/$export?_since={future.replace('+', '%2B')}")
    _run(status_url)
    assert orjson.loads(api.get(status_url, **bearer(token)).content)["output"] == []

    first = Resource.objects.filter(patient=alice_record, resource_type="Observation").first()
    an_observation = orjson.loads(api.get(f"/fhir/Observation/{first.fhir_id}", **bearer(token)).content)
    code = an_observation["code"]["coding"][0]
    query = f"Observation?code={code['system']}|{code['code']}"
    response = api.get(
        "/fhir/Patient/$export", {"_type": "Observation", "_typeFilter": query}, **bearer(token), **ASYNC
    )
    assert response.status_code == 202
    filtered = response["Content-Location"].split("testserver", 1)[1]
    _run(filtered)
    output = orjson.loads(api.get(filtered, **bearer(token)).content)["output"]
    lines = _ndjson(api, token, output[0]["url"])
    assert lines
    assert all(any(c["code"] == code["code"] for c in line["code"]["coding"]) for line in lines)
    assert len(lines) < Resource.objects.filter(patient=alice_record, resource_type="Observation").count()


def test_bad_kickoffs_are_clear_400s(api, clinician, token_for, held):
    token = token_for(clinician)
    for query, extra in [
        ("", {"HTTP_PREFER": "respond-sync"}),
        ("?_type=Spaceship", ASYNC),
        ("?_since=yesterday", ASYNC),
        ("?_since=2024-01-01T00:00:00", ASYNC),
        ("?_outputFormat=text/csv", ASYNC),
        ("?_typeFilter=Condition?code=x", {**ASYNC}),
        ("?_typeFilter=Observation?frobnicate=1", ASYNC),
        ("?_typeFilter=Observation?date=notadate", ASYNC),
        ("?includeAssociatedData=x", ASYNC),
    ]:
        url = "/fhir/Patient/$export" + query
        if "Condition?code" in query:
            url += "&_type=Observation"
        response = api.get(url, **bearer(token), **extra)
        assert response.status_code == 400, (query, response.content)
        assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"
    assert not ExportJob.objects.exists()
    assert held == []


def test_a_parameters_body_kicks_off_an_export(api, clinician, token_for, issue_grant, alice_record, held):
    issue_grant(resource_types=["Observation", "Condition"])
    token = token_for(clinician)
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Condition"}]}
    response = api.post(
        "/fhir/Patient/$export", orjson.dumps(body), content_type="application/fhir+json", **bearer(token), **ASYNC
    )
    assert response.status_code == 202
    status_url = response["Content-Location"].split("testserver", 1)[1]
    _run(status_url)
    assert [o["type"] for o in orjson.loads(api.get(status_url, **bearer(token)).content)["output"]] == ["Condition"]


def test_expired_exports_are_deleted_by_housekeeping(api, clinician, token_for, issue_grant, alice_record, held):
    issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, "/fhir/Patient/$export")
    job = _run(status_url)
    ExportJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api.get(status_url, **bearer(token)).status_code == 404
    report = bulk_export.exports_housekeeping()
    assert report["expired"] >= 1
    assert not ExportJob.objects.filter(pk=job.pk).exists()
    assert not ExportSegment.objects.filter(job_id=job.pk).exists()


def test_an_accepted_export_never_published_is_published_by_housekeeping(
    api, clinician, token_for, issue_grant, alice_record, held, django_capture_on_commit_callbacks
):
    issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    with django_capture_on_commit_callbacks(execute=True):
        status_url = _kickoff(api, token, "/fhir/Patient/$export")
    job_id = status_url.rsplit("/", 1)[1]
    assert held == [job_id]  # published on commit
    ExportJob.objects.filter(pk=job_id).update(created_at=timezone.now() - timedelta(minutes=1))
    bulk_export.exports_housekeeping()
    assert held == [job_id, job_id]  # still owed (the seam recorded, not marked): published again


def test_the_export_runs_through_the_celery_task(
    api, clinician, token_for, issue_grant, alice_record, settings, django_capture_on_commit_callbacks
):
    from healthledger.celery import app

    issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    app.conf.task_always_eager = True
    try:
        with pytest.MonkeyPatch.context() as patch, django_capture_on_commit_callbacks(execute=True):
            patch.setattr(bulk_export.worker, "EXPORT_STEP_SECONDS", 0)  # one chunk per task: each step queues the next
            status_url = _kickoff(api, token, "/fhir/Patient/$export")
    finally:
        app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER
    job = ExportJob.objects.get(pk=status_url.rsplit("/", 1)[1])
    assert job.status == "completed"
    assert job.published_at is not None
    assert job.resources == Resource.objects.filter(patient=alice_record, resource_type="Observation").count()


def test_a_token_in_a_patients_launch_context_exports_that_record_only(
    api, clinician, token_for, issue_grant, alice_record, other_patient, held
):
    from oauth2_provider.models import AccessToken

    from api.smart_models import TokenLaunch
    from records.demo import generate_patient_bundle
    from records.services import fhir_ingest

    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(11, years=1)), actor="system:test", patient=other_patient)
    issue_grant(resource_types=["Observation"])
    issue_grant(patient=other_patient, by=other_patient.user, resource_types=["Observation"])
    everyone = token_for(clinician)
    assert orjson.loads(api.get(f"/fhir/Group/{group_id(clinician)}", **bearer(everyone)).content)["quantity"] == 2

    pinned = token_for(clinician)
    TokenLaunch.objects.create(access_token=AccessToken.objects.order_by("-pk").first(), patient=alice_record)
    group = orjson.loads(api.get(f"/fhir/Group/{group_id(clinician)}", **bearer(pinned)).content)
    assert [m["entity"]["reference"] for m in group["member"]] == [f"Patient/{alice_record.fhir_id}"]
    status_url = _kickoff(api, pinned, f"/fhir/Group/{group_id(clinician)}/$export")
    job = _run(status_url)
    assert job.patient_ids == [str(alice_record.pk)]
    logged = AccessLogEntry.objects.filter(job_id=f"export:{job.pk}")
    assert {e.patient_ref for e in logged} == {alice_record.pk}
    assert job.resources == Resource.objects.filter(patient=alice_record, resource_type="Observation").count()


def test_the_capability_statement_declares_export_everything_and_group(api):
    statement = orjson.loads(api.get("/fhir/metadata").content)
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    patient_ops = {o["name"]: o["definition"] for o in by_type["Patient"]["operation"]}
    assert patient_ops["everything"].endswith("/fhir/OperationDefinition/Patient-everything")
    assert patient_ops["export"].endswith("/fhir/OperationDefinition/Patient-export")
    assert [o["name"] for o in by_type["Group"]["operation"]] == ["export"]
    for definition_url in [*patient_ops.values(), by_type["Group"]["operation"][0]["definition"]]:
        definition = orjson.loads(api.get(definition_url.split("testserver", 1)[1]).content)
        OperationDefinition.model_validate(definition)
        assert definition["url"] == definition_url
    export = orjson.loads(api.get("/fhir/OperationDefinition/Group-export").content)
    assert {p["name"] for p in export["parameter"] if p["use"] == "in"} == {
        "_outputFormat",
        "_since",
        "_type",
        "_typeFilter",
    }
    assert export["base"] == "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"


def test_erasing_the_record_shreds_its_export_files_too(api, clinician, token_for, issue_grant, alice_record, held):
    from records.services import patient_erase

    issue_grant(resource_types=["Observation"])
    token = token_for(clinician)
    status_url = _kickoff(api, token, "/fhir/Patient/$export")
    _run(status_url)
    url = orjson.loads(api.get(status_url, **bearer(token)).content)["output"][0]["url"]
    assert _ndjson(api, token, url)

    patient_erase(patient=alice_record, actor="system:test")

    assert _ndjson(api, token, url) == []  # the segments are still stored, and can never be opened again


def test_a_fourth_open_export_is_throttled_with_retry_after(api, clinician, token_for, held):
    token = token_for(clinician)
    for _ in range(bulk_export.EXPORT_OPEN_MAX):
        _kickoff(api, token, "/fhir/Patient/$export")
    throttled = api.get("/fhir/Patient/$export", **bearer(token), **ASYNC)
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == "30"
    assert orjson.loads(throttled.content)["issue"][0]["code"] == "throttled"
    assert ExportJob.objects.count() == bulk_export.EXPORT_OPEN_MAX
