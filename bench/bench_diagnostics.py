"""Scoring the 40 Synthea patients through Celery against scoring the same inputs in process.

Setup (not timed): the 40 bundles are imported into 40 records, each patient grants a clinician
run-model on Patient, Observation, Condition and MedicationRequest for treatment (recorded on a
local anvil), and a real `celery worker --pool=prefork -c 2` is started on this run's database,
Redis and anvil. Each patient is scored by two models (ASCVD PCE 2013, eGFR CKD-EPI 2021) as of
the date of their latest observation, ROUNDS times over.

Variants, all on the same jobs' inputs, in the same run:
- celery, batched: the clinician's jobs queued BATCH job ids per message; timed from queuing to
  the last job terminal. Each job does everything a real one does: consent re-checked in the
  database and with `isActive` on anvil at start and before release, every declared input read
  through the gate (blind-index search, decrypt, access-log row with the job id), the model run,
  RiskAssessment + Provenance encrypted into the record, JobResult, release log entry.
- celery, one job per message: the same, unbatched.
- in-process pipeline: diagnostic_job_execute called in this process, one job after another, BATCH at
  a time sharing the chain's per-block answers as a worker's batch does (no broker, one process):
  everything above but Celery.
- per job, counted (not timed) over one more round run the same way: SQL statements, and questions to
  the chain (isActive calls and block-number reads). Unlike the rates, these do not move with the load
  of a shared machine.
- in-process model only: model.run over the very inputs the gate returned, already decrypted and
  parsed before the clock starts: the arithmetic alone.

The ratio the issue asks for is celery (batched) over in-process model-only; it is reported as
measured. The denominator does none of the consent, decryption, logging, chain calls or storage,
so it is the price of all of those, not of Celery; the pipeline ratio isolates Celery's own cost.
Needs Redis (REDIS_URL) and anvil (npm install); without them the figures are skipped with a message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from bench.harness import FIXTURES, Figure

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("ascvd-pce-2013", "egfr-ckd-epi-2021")
ROUNDS = 3
BATCH = 8
WORKERS = 2
GRANTED_TYPES = ["Condition", "MedicationRequest", "Observation", "Patient"]
QUEUE = f"diag-bench-{os.getpid()}"


def _fresh_database() -> str:
    """A database the worker process can open too; returns its DATABASE_URL ("" for the default SQLite path)."""
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    # The worker opens $HEALTHLEDGER_VAR_DIR/healthledger.sqlite3 with WAL and a busy timeout: use that file.
    connection.close()
    settings.DATABASES["default"]["NAME"] = str(Path(os.environ["HEALTHLEDGER_VAR_DIR"]) / "healthledger.sqlite3")
    settings.DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
    }
    call_command("migrate", verbosity=0)
    return ""


def _latest_date(bundle: dict[str, Any]) -> date:
    dates = [
        entry["resource"].get("effectiveDateTime", "")[:10]
        for entry in bundle.get("entry", [])
        if entry["resource"].get("resourceType") == "Observation"
    ]
    return date.fromisoformat(max(d for d in dates if d))


def _grant_signed(**terms: Any) -> Any:
    """grant_issue as the portal calls it: the bench acts as her device (ledger.device), registering a fresh key
    for her record and signing the grant's typed data with it, as her browser would."""
    from consent.keys import patient_key_register, registration_typed_data
    from consent.services import grant_draft, grant_issue, grant_typed_data
    from ledger.device import Device

    patient, device = terms["patient"], Device.new()
    typed = registration_typed_data(patient=patient, key=device.address)
    patient_key_register(patient=patient, by=terms["by"], address=device.address, signature=device.sign(typed))
    draft = grant_draft(**terms)
    return grant_issue(
        **terms,
        signature=device.sign(grant_typed_data(draft)),
        salt=draft.salt,
        commitment_salt=draft.commitment_salt,
    )


def _load_patients(clinician: Any) -> list[tuple[Any, date]]:
    from accounts.services import user_create
    from consent.models import Grant, GrantStatus
    from ledger.outbox import outbox_relay
    from records.services import fhir_ingest, patient_create

    loaded: list[tuple[Any, date]] = []
    grants = []
    now = timezone.now()
    for index, path in enumerate(sorted(FIXTURES.glob("*.json"))):
        raw = path.read_bytes()
        bundle = orjson.loads(raw)
        owner = user_create(username=f"bench-diag-patient-{index}", password=None, role="patient")
        patient = patient_create(user=owner)
        fhir_ingest(payload=raw, actor="system:bench", patient=patient)
        patient.refresh_from_db()
        grants.append(
            _grant_signed(
                patient=patient, by=owner, grantee=clinician, resource_types=GRANTED_TYPES, actions=["run-model"],
                purpose="TREAT", not_before=now - timedelta(minutes=5), not_after=now + timedelta(days=30),
            )
        )  # fmt: skip
        loaded.append((patient, _latest_date(bundle)))
    deadline = time.monotonic() + 120
    while Grant.objects.filter(pk__in=[g.pk for g in grants], status=GrantStatus.RECORDED).count() < len(grants):
        if time.monotonic() > deadline:
            raise RuntimeError("grants were not recorded on anvil within 120 s")
        outbox_relay()
    return loaded


def _start_worker(database_url: str, rpc_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CHAIN_RPC_URL": rpc_url, "CHAIN_BACKEND": "rpc", "REDIS_URL": settings.REDIS_URL}
    if database_url:
        env["DATABASE_URL"] = database_url
    else:
        env.pop("DATABASE_URL", None)
    command = [
        str(Path(sys.executable).with_name("celery")), "-A", "healthledger", "worker", "--pool=prefork",
        "-c", str(WORKERS), "-l", "WARNING", "-Q", QUEUE, "-n", f"diag-bench-{os.getpid()}@%h",
        "--without-gossip", "--without-mingle", "--prefetch-multiplier=1",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    # Ready when it answers a ping on its own queue's broker.
    from healthledger.celery import app

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the worker exited: " + log.read_text(errors="replace")[-2000:])
        replies = app.control.ping(destination=[f"diag-bench-{os.getpid()}@{os.uname().nodename}"], timeout=0.5)
        if replies:
            return process
    raise RuntimeError("the worker did not become ready within 60 s")


def _jobs(clinician: Any, patients: list[tuple[Any, date]]) -> list[str]:
    from diagnostics.services import diagnostic_job_request

    return [
        str(diagnostic_job_request(requester=clinician, patient=p, model_id=m, as_of=as_of, enqueue=False).id)
        for _ in range(ROUNDS)
        for p, as_of in patients
        for m in MODELS
    ]


def _through_celery(job_ids: list[str], batch: int) -> float:
    from diagnostics.models import TERMINAL_STATUSES, DiagnosticJob
    from diagnostics.tasks import diagnostic_job_run, diagnostic_jobs_run_batch

    started = time.perf_counter()
    for i in range(0, len(job_ids), batch):
        part = job_ids[i : i + batch]
        if batch == 1:
            diagnostic_job_run.apply_async(args=[part[0]], queue=QUEUE)
        else:
            diagnostic_jobs_run_batch.apply_async(args=[part], queue=QUEUE)
    deadline = time.monotonic() + 600
    while DiagnosticJob.objects.filter(pk__in=job_ids, status__in=TERMINAL_STATUSES).count() < len(job_ids):
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not finish within 600 s")
        time.sleep(0.02)
    return time.perf_counter() - started


def _decrypted_inputs(patients: list[tuple[Any, date]]) -> list[tuple[Any, dict[str, Any], date]]:
    """Each (model, inputs, as_of) of one round, read through the gate as the patient, before any clock starts."""
    from diagnostics.models import DiagnosticJob
    from diagnostics.services import _inputs_read, model_get

    prepared = []
    for patient, as_of in patients:
        for model_id in MODELS:
            model = model_get(model_id)
            probe = DiagnosticJob(requester_id=patient.user_id, patient=patient, purpose="PATRQT", as_of=as_of)
            prepared.append((model, _inputs_read(probe, model.spec, patient).values, as_of))
    return prepared


def _in_process(job_ids: list[str]) -> None:
    from diagnostics.services import chain_answers_per_block, diagnostic_job_execute

    for i in range(0, len(job_ids), BATCH):
        with chain_answers_per_block():
            for job_id in job_ids[i : i + BATCH]:
                diagnostic_job_execute(job_id=job_id)


def _counted(job_ids: list[str]) -> tuple[float, float]:
    """SQL statements and chain questions (isActive, block number) per job, over `job_ids` run in process."""
    from django.test.utils import CaptureQueriesContext

    from diagnostics.services import consent_checks
    from ledger.client import ChainClient

    asked = [0]
    real_active, real_block = consent_checks.grant_active_on_chain, ChainClient.block_number

    def active(grant: Any) -> bool:
        asked[0] += 1
        return real_active(grant)

    def block(self: Any) -> int:
        asked[0] += 1
        return real_block(self)

    consent_checks.grant_active_on_chain, ChainClient.block_number = active, block  # type: ignore[assignment,method-assign]
    try:
        with CaptureQueriesContext(connection) as queries:
            _in_process(job_ids)
    finally:
        consent_checks.grant_active_on_chain, ChainClient.block_number = real_active, real_block  # type: ignore[method-assign]
    return len(queries.captured_queries) / len(job_ids), asked[0] / len(job_ids)


def run() -> list[Figure]:
    from accounts.services import user_create
    from diagnostics.models import DiagnosticJob
    from ledger.client import chain_client, chain_client_reset
    from ledger.devnode import ANVIL_BINARY, anvil_running
    from ledger.services import deployment_create

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        print(f"   skipped: no Redis at {settings.REDIS_URL}")
        return []
    if not ANVIL_BINARY.exists():
        print("   skipped: anvil missing (npm install)")
        return []

    database_url = _fresh_database()
    with anvil_running() as rpc_url:
        settings.CHAIN_RPC_URL, settings.CHAIN_BACKEND = rpc_url, "rpc"
        chain_client_reset()
        deployment_create(client=chain_client())
        clinician = user_create(username="bench-diag-clinician", password=None, role="clinician")
        patients = _load_patients(clinician)
        log = Path(os.environ["HEALTHLEDGER_VAR_DIR"]) / "bench-diag-worker.log"
        worker = _start_worker(database_url, rpc_url, log)
        try:
            warm = _jobs(clinician, patients[:4])
            _through_celery(warm, BATCH)  # worker children import and connect once, outside the clock
            batched = _jobs(clinician, patients)
            batched_s = _through_celery(batched, BATCH)
            single = _jobs(clinician, patients)
            single_s = _through_celery(single, 1)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
            redis.Redis.from_url(settings.REDIS_URL).delete(QUEUE)

        in_process = _jobs(clinician, patients)
        started = time.perf_counter()
        _in_process(in_process)
        pipeline_s = time.perf_counter() - started
        statements, chain_calls = _counted(_jobs(clinician, patients))

        prepared = _decrypted_inputs(patients)
        started = time.perf_counter()
        for _ in range(ROUNDS):
            for model, inputs, as_of in prepared:
                model.run(inputs, as_of=as_of)
        model_s = time.perf_counter() - started
        chain_client_reset()

    n = len(batched)
    statuses = dict(DiagnosticJob.objects.filter(pk__in=batched).values_list("status").annotate(n=Count("id")))
    print(
        f"   {n} jobs per variant ({len(patients)} patients x {len(MODELS)} models x {ROUNDS});"
        f" batched statuses {statuses}"
    )
    celery_batched = n / batched_s
    celery_single = n / single_s
    pipeline = n / pipeline_s
    model_only = n / model_s
    ratio = celery_batched / model_only
    return [
        # Issue 15's goal: 60 jobs/s through Celery with two worker processes, the chain asked at start and release.
        Figure(
            f"diagnostics celery jobs/s ({WORKERS} processes, batch {BATCH})",
            celery_batched,
            "jobs/s",
            ">= 60",
            celery_batched >= 60,
        ),
        Figure(f"diagnostics celery jobs/s ({WORKERS} processes, 1 per message)", celery_single, "jobs/s"),
        Figure("diagnostics in-process pipeline jobs/s (1 process, no broker)", pipeline, "jobs/s"),
        Figure("diagnostics in-process model-only runs/s (inputs pre-decrypted)", model_only, "runs/s"),
        Figure("diagnostics ratio celery batched / in-process model-only", ratio, "ratio", ">= 0.8", ratio >= 0.8),
        Figure("diagnostics ratio celery batched / in-process pipeline", celery_batched / pipeline, "ratio"),
        Figure("diagnostics ratio celery batched / one per message", celery_batched / celery_single, "ratio"),
        Figure("diagnostics SQL statements per job (in process, batch 8)", statements, "statements"),
        Figure("diagnostics chain questions per job (isActive + block number, batch 8)", chain_calls, "calls"),
    ]
