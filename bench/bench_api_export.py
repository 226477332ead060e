"""bench_api, continued: a FHIR Bulk Data Group `$export` of 1,000 patients, as the worker runs it.

A clinician holds a recorded read grant on each of BENCH_EXPORT_PATIENTS (default 1,000) generated
records (a year of data each). The export is accepted as the API accepts it (api.bulk_export.export_accept,
the cohort frozen from the live grants) and run by the worker's own function (export_step) in this
process: every chunk read through the gate, logged, sealed at rest and stored. Reported: resources per
second over the whole run, and the worker's peak memory growth above where it started (RSS sampled
every 20 ms), which stays about one chunk whatever the Group's size.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from datetime import timedelta

from bench.harness import Figure

PATIENTS = int(os.environ.get("BENCH_EXPORT_PATIENTS", "1000"))


def _setup():  # type: ignore[no-untyped-def]
    import orjson
    from django.utils import timezone

    from accounts.services import user_create
    from consent.models import Grant, GrantStatus
    from records.demo import generate_patient_bundle
    from records.services import fhir_ingest, patient_create

    tag = secrets.token_hex(4)
    clinician = user_create(username=f"bench-export-clinician-{tag}", password=None, role="clinician")
    now = timezone.now()
    started = time.perf_counter()
    for seed in range(PATIENTS):
        owner = user_create(username=f"bench-export-patient-{tag}-{seed}", password=None, role="patient")
        patient = patient_create(user=owner)
        bundle = generate_patient_bundle(10_000 + seed, years=1)
        fhir_ingest(payload=orjson.dumps(bundle), actor="system:bench", patient=patient)
        Grant.objects.create(
            id="0x" + secrets.token_hex(32), patient=patient, grantee=clinician,
            resource_types=["Observation", "Condition", "MedicationRequest", "Encounter", "Patient"],
            actions=["read"], purpose="TREAT", not_before=now - timedelta(days=1), not_after=now + timedelta(days=30),
            patient_address="0x" + "11" * 20, grantee_address="0x" + "22" * 20, salt="0x" + "33" * 32,
            commitment_salt="0x" + "44" * 32, scope_commitment="0x" + "55" * 32, signature="0x" + "66" * 65,
            status=GrantStatus.RECORDED,
        )  # fmt: skip
    print(f"   {PATIENTS} records ingested and granted in {time.perf_counter() - started:.0f} s", flush=True)
    return clinician


class _PeakRss:
    """Samples this process's resident memory in a thread; `peak` is the highest seen."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run() -> list[Figure]:
    from api import bulk_export
    from api.bulk_models import ExportSegment
    from api.fhir.records import RECORD_TYPES

    clinician = _setup()
    # The broker is not measured: the export is handed to this process's worker function directly.
    published: list[str] = []
    real_publish = bulk_export.lifecycle.export_publish
    bulk_export.lifecycle.export_publish = lambda *, job_id: published.append(str(job_id)) or True  # type: ignore[assignment]
    try:
        job = bulk_export.export_accept(
            requester=clinician, application_id=None, purpose="TREAT", patient_context=None, kind="group",
            request_url="bench", resource_types=sorted(RECORD_TYPES), since=None, type_filters=[],
        )  # fmt: skip
    finally:
        bulk_export.lifecycle.export_publish = real_publish  # type: ignore[assignment]
    started = time.perf_counter()
    steps = 0
    with _PeakRss() as memory:
        while not bulk_export.export_step(job_id=job.pk, budget_seconds=bulk_export.EXPORT_STEP_SECONDS):
            steps += 1
    elapsed = time.perf_counter() - started
    job.refresh_from_db()
    assert job.status == "completed", job.status
    assert len(job.patient_ids) == PATIENTS, len(job.patient_ids)
    segments = ExportSegment.objects.filter(job=job).count()
    growth_mb = (memory.peak - memory.start) / 2**20
    print(
        f"   {job.resources} resources of {PATIENTS} records in {elapsed:.1f} s, {steps + 1} task steps, "
        f"{segments} sealed segments (chunks of at most {bulk_export.EXPORT_CHUNK})",
        flush=True,
    )
    return [
        Figure(f"api: {PATIENTS:,}-patient Group $export", job.resources / elapsed, "resources/s"),
        Figure(f"api: {PATIENTS:,}-patient Group $export peak worker memory growth", growth_mb, "MB"),
    ]
