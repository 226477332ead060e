"""An unmodified Bulk Data client from PyPI (smart-fetch's BulkExporter, on cumulus-fhir-support's FhirClient)
runs a Group export against a live server: kick-off, polling through 202 + Retry-After, manifest, downloads, DELETE."""

from __future__ import annotations

import asyncio
import threading
import time

import cumulus_fhir_support as cfs
import orjson
import pytest
from smart_fetch import bulk_utils, lifecycle

from api import bulk_export
from api.bulk_models import ExportJob, ExportSegment
from api.fhir.bulk import group_id
from audit.models import AccessLogEntry
from records.models import Resource

pytestmark = pytest.mark.django_db(transaction=True)


def test_smart_fetch_exports_a_group_end_to_end(
    live_server, clinician, token_for, issue_grant, alice_record, tmp_path, monkeypatch
):
    issue_grant(resource_types=["Observation", "Condition"])
    token = token_for(clinician)
    # The broker seam held: this test runs the worker's chunks itself, while the client polls.
    monkeypatch.setattr(bulk_export.lifecycle, "export_publish", lambda *, job_id: True)

    async def export() -> None:
        async with cfs.FhirClient(f"{live_server.url}/fhir", ["Observation"], bearer_token=token) as client:
            exporter = bulk_utils.BulkExporter(
                client,
                {"Observation"},
                f"{live_server.url}/fhir/Group/{group_id(clinician)}",
                str(tmp_path),
                metadata=lifecycle.OutputMetadata(str(tmp_path)),
            )
            await exporter.export()
            waited.append(exporter._total_wait_time)  # seconds it slept on our Retry-After

    failures: list[BaseException] = []
    waited: list[int] = []

    def run_client() -> None:
        try:
            asyncio.run(export())
        except BaseException as exc:
            failures.append(exc)

    client_thread = threading.Thread(target=run_client)
    client_thread.start()
    deadline = time.monotonic() + 30
    while not ExportJob.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    job = ExportJob.objects.get()
    time.sleep(0.5)  # the client polls once while the export is still accepted: 202, Retry-After
    assert bulk_export.export_step(job_id=job.pk, budget_seconds=60)
    client_thread.join(timeout=60)
    assert not client_thread.is_alive()
    assert failures == []
    assert waited == [2]  # one 202 with Retry-After: 2, then the manifest

    lines = (tmp_path / "Observation.001.ndjson").read_text().splitlines()
    expected = set(
        Resource.objects.filter(patient=alice_record, resource_type="Observation").values_list("fhir_id", flat=True)
    )
    assert len(lines) == len(expected)
    assert {orjson.loads(line)["id"] for line in lines} == expected
    assert "status_complete" in (tmp_path / "log.ndjson").read_text()
    # The client's DELETE after downloading: the export is cancelled and its files deleted.
    assert ExportJob.objects.get().status == "cancelled"
    assert not ExportSegment.objects.exists()
    assert AccessLogEntry.objects.filter(job_id=f"export:{job.pk}", outcome="permit").exists()
