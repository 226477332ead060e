"""Research analyses over generated cohorts: through Celery (2 worker processes) and in one process.

Setup (not timed): N generated participants (a Patient, a type 2 diabetes Condition for about a third,
a total cholesterol result), each registering a key of her own and joining one recruiting study by a grant
signed with it, recorded on a local anvil (a hundred participants per transaction, relayed meanwhile);
a real `celery worker --pool=prefork -c 2` on this run's database and Redis, on a queue of its own.
Cohorts of 1,000 then 5,000 (RESEARCH_BENCH_SIZES): the second adds to the first.

For each cohort size and each analysis (count by strata: sex x diabetes present; mean/SD/quartiles of
total cholesterol), the same study, analysis and cohort, measured side by side:
- celery: queue the run's start task; time until the run is terminal. The start task freezes the cohort
  and commits to it, fans out one task per 100 participants, each chunk reads every participant through
  the gate under their own grant (one log entry per participant read) and stores its sums; the last one combines and
  applies disclosure control.
- in process: the very same services called in this process, one chunk after another, no broker.
Memory: the worker children's peak resident size (VmHWM) after the largest cohort over that after the
smallest: flat memory means chunks never hold more than one chunk's participants.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bench.bench_diagnostics import _fresh_database
from bench.harness import Figure

ROOT = Path(__file__).resolve().parent.parent
QUEUE = f"research-bench-{os.getpid()}"
WORKERS = 2
SIZES = tuple(int(x) for x in os.environ.get("RESEARCH_BENCH_SIZES", "1000,5000").split(","))
ANALYSES = (("count-by-strata", 0), ("observation-summary", 1))
SETUP_BATCH = 100
PATIENT_URN = "urn:uuid:00000000-0000-4000-8000-000000000001"
URN = "urn:uuid:00000000-0000-4000-8000-00000000000"


def _bundle(rng: random.Random) -> bytes:
    entries: list[dict[str, Any]] = [
        {"fullUrl": PATIENT_URN, "request": {"method": "POST", "url": "Patient"},
         "resource": {"resourceType": "Patient", "gender": rng.choice(["female", "male"]),
                      "birthDate": f"{rng.randint(1940, 2000)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"}},
        {"fullUrl": f"{URN}3", "request": {"method": "POST", "url": "Observation"},
         "resource": {"resourceType": "Observation", "status": "final", "subject": {"reference": PATIENT_URN},
                      "effectiveDateTime": "2025-06-01T10:00:00Z",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]},
                      "valueQuantity": {"value": round(rng.gauss(200, 35), 1), "unit": "mg/dL",
                                        "system": "http://unitsofmeasure.org", "code": "mg/dL"}}},
    ]  # fmt: skip
    if rng.random() < 0.33:
        entries.append(
            {"fullUrl": f"{URN}2", "request": {"method": "POST", "url": "Condition"},
             "resource": {"resourceType": "Condition", "subject": {"reference": PATIENT_URN},
                          "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}}}
        )  # fmt: skip
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def _spec() -> dict[str, Any]:
    return {
        "title": "Bench study", "summary": "Benchmark cohort.", "institution": "Bench", "funder": "Bench",
        "commercial": False, "ethics_ref": "BENCH-1", "duo": ["HMB"],
        "ends": (timezone.now() + timedelta(days=365)).date().isoformat(),
        "analyses": [
            {"id": "count-by-strata", "params": {"strata": ["sex", "condition"],
                                                 "condition": "http://snomed.info/sct|44054006"}},
            {"id": "observation-summary",
             "params": {"code": "http://loinc.org|2093-3", "unit": "mg/dL", "lo": 0, "hi": 600, "bin": 1}},
        ],
    }  # fmt: skip


def _participant_join(study: Any, index: int, rng: random.Random) -> None:
    """One generated participant: her record, her own key registered, and the study's grant signed with it, as
    her browser would (the bench acts as her device, ledger.device; the server signs nothing in her name)."""
    from accounts.services import user_create
    from consent.keys import patient_key_register, registration_typed_data
    from consent.services import grant_typed_data
    from ledger.device import Device
    from records.services import fhir_ingest, patient_create
    from research.services import participation_draft, participation_join

    owner = user_create(username=f"bench-research-{index}", password=None, role="patient")
    patient = patient_create(user=owner)
    fhir_ingest(payload=_bundle(rng), actor="system:bench", patient=patient)
    device = Device.new()
    typed = registration_typed_data(patient=patient, key=device.address)
    patient_key_register(patient=patient, by=owner, address=device.address, signature=device.sign(typed))
    draft = participation_draft(study=study, by=owner)
    participation_join(study=study, by=owner, signature=device.sign(grant_typed_data(draft)), salt=draft.salt,
                       commitment_salt=draft.commitment_salt, not_before=draft.not_before)  # fmt: skip


# The outbox relay as Celery beat runs it beside the portal: its own process, so the chain's transactions are sent
# while the next participants are created instead of after them. It stops once the stop file exists.
RELAY_LOOP = """
import os, sys, time
import django
django.setup()
from ledger.outbox import outbox_relay
while not os.path.exists(sys.argv[1]):
    report = outbox_relay(limit=200)
    if not (report.sent or report.confirmed or report.waiting):
        time.sleep(0.2)
"""


def _relay_start(database_url: str, stop: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CHAIN_RPC_URL": settings.CHAIN_RPC_URL, "CHAIN_BACKEND": "rpc"}
    if database_url:
        env["DATABASE_URL"] = database_url
    stop.unlink(missing_ok=True)
    with stop.with_suffix(".log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-c", RELAY_LOOP, str(stop)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip


def _participants_add(study: Any, start: int, count: int, database_url: str) -> None:
    """Participants start .. start + count - 1, a batch of SETUP_BATCH per transaction (one commit per batch
    instead of several per participant), their keys and grants relayed to anvil meanwhile by another process."""
    from consent.models import Grant, GrantStatus
    from ledger.outbox import outbox_relay

    stop = Path(os.environ["HEALTHLEDGER_VAR_DIR"]) / "bench-research-relay.stop"
    relay = _relay_start(database_url, stop)
    rng = random.Random(start)
    try:
        for first in range(start, start + count, SETUP_BATCH):
            with transaction.atomic():
                for index in range(first, min(first + SETUP_BATCH, start + count)):
                    _participant_join(study, index, rng)
    finally:
        stop.touch()
        try:
            relay.wait(timeout=120)
        except subprocess.TimeoutExpired:
            relay.kill()
    deadline = time.monotonic() + 900
    while Grant.objects.filter(status=GrantStatus.PENDING).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("grants were not recorded on anvil within 900 s")
        outbox_relay(limit=500)


def _start_worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    from bench import bench_diagnostics

    # The diagnostics bench's worker launcher, on this bench's own queue and name.
    previous = bench_diagnostics.QUEUE
    bench_diagnostics.QUEUE = QUEUE
    try:
        return bench_diagnostics._start_worker(database_url, settings.CHAIN_RPC_URL, log)
    finally:
        bench_diagnostics.QUEUE = previous


def _children_peak_kb(worker: subprocess.Popen[bytes]) -> int:
    peak = 0
    for pid in Path("/proc").iterdir():
        if not pid.name.isdigit():
            continue
        try:
            status = (pid / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(worker.pid):
            peak = max(peak, int(fields.get("VmHWM", "0 kB").split()[0]))
    return peak


def _through_celery(study: Any, researcher: Any, index: int) -> tuple[float, str]:
    from research.models import AnalysisRun
    from research.services import analysis_run_request
    from research.tasks import analysis_run_start

    run = analysis_run_request(study=study, by=researcher, analysis_index=index, enqueue=False)
    started = time.perf_counter()
    analysis_run_start.apply_async(args=[str(run.pk)], queue=QUEUE)
    deadline = time.monotonic() + 1800
    while True:
        status = AnalysisRun.objects.filter(pk=run.pk).values_list("status", flat=True).get()
        if status not in ("queued", "running"):
            return time.perf_counter() - started, status
        if time.monotonic() > deadline:
            raise RuntimeError("the run did not finish within 1800 s")
        time.sleep(0.02)


def _in_process(study: Any, researcher: Any, index: int) -> tuple[float, str]:
    from research import runs
    from research.services import analysis_run_request

    run = analysis_run_request(study=study, by=researcher, analysis_index=index, enqueue=False)
    started = time.perf_counter()
    for chunk in runs.analysis_run_start(run_id=str(run.pk)):
        runs.analysis_chunk_run(run_id=str(run.pk), index=chunk)
    done = runs.analysis_run_combine(run_id=str(run.pk))
    return time.perf_counter() - started, done.status


def run() -> list[Figure]:
    from accounts.services import user_create
    from ledger.client import chain_client, chain_client_reset
    from ledger.devnode import ANVIL_BINARY, anvil_running
    from ledger.services import deployment_create
    from research.services import study_create, study_transition

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        print(f"   skipped: no Redis at {settings.REDIS_URL}")
        return []
    if not ANVIL_BINARY.exists():
        print("   skipped: anvil missing (npm install)")
        return []
    database_url = _fresh_database()
    figures: list[Figure] = []
    peaks: dict[int, int] = {}
    with anvil_running() as rpc_url:
        settings.CHAIN_RPC_URL, settings.CHAIN_BACKEND = rpc_url, "rpc"
        chain_client_reset()
        deployment_create(client=chain_client())
        researcher = user_create(username="bench-researcher", password=None, role="researcher")
        steward = user_create(username="bench-steward", password=None, role="steward")
        study = study_create(by=researcher, spec=_spec())
        for to, by in (("submitted", researcher), ("in-review", steward), ("approved", steward),
                       ("recruiting", researcher)):  # fmt: skip
            study = study_transition(study=study, to=to, by=by)
        log = Path(os.environ["HEALTHLEDGER_VAR_DIR"]) / "bench-research-worker.log"
        have = 0
        worker = None
        try:
            for size in SIZES:
                started = time.perf_counter()
                _participants_add(study, have, size - have, database_url)
                have = size
                print(f"   {size} participants joined in {time.perf_counter() - started:.0f} s (setup)", flush=True)
                if worker is None:
                    worker = _start_worker(database_url, log)
                    _through_celery(study, researcher, 0)  # children import and connect outside the clock
                for name, index in ANALYSES:
                    celery_s, celery_status = _through_celery(study, researcher, index)
                    local_s, local_status = _in_process(study, researcher, index)
                    celery_rate, local_rate = size / celery_s, size / local_s
                    print(f"   {name} at {size}: celery {celery_status}, in process {local_status}", flush=True)
                    figures += [
                        Figure(f"research: {name} participants/s through Celery ({WORKERS} processes), n={size}",
                               celery_rate, "participants/s", ">= 300", celery_rate >= 300),
                        Figure(f"research: {name} participants/s in one process, no broker, n={size}",
                               local_rate, "participants/s"),
                        Figure(f"research: {name} ratio Celery / in-process, n={size}", celery_rate / local_rate,
                               "ratio", ">= 0.8", celery_rate / local_rate >= 0.8),
                    ]  # fmt: skip
                peaks[size] = _children_peak_kb(worker)
        finally:
            if worker is not None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            redis.Redis.from_url(settings.REDIS_URL).delete(QUEUE)
            chain_client_reset()
    if len(peaks) >= 2 and peaks[min(peaks)]:
        ratio = peaks[max(peaks)] / peaks[min(peaks)]
        figures.append(
            Figure(f"research: peak worker memory ratio n={max(peaks)} / n={min(peaks)}", ratio, "ratio", "<= 1.2",
                   ratio <= 1.2)
        )  # fmt: skip
    return figures
