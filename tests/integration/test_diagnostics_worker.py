"""Diagnostic jobs through the real parts: a prefork Celery worker process, Redis, anvil and PostgreSQL.

100 jobs are queued; while they run, the worker's pool children are killed with SIGKILL. Each
killed delivery goes back to the queue (acks_late + reject_on_worker_lost), and the job's
own bookkeeping makes the redelivery harmless: every job ends in exactly one terminal state,
no result is stored twice, every plaintext read is in the access log with the job's id, and
no job was delivered more than five times.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import orjson
import psutil
import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from accounts.services import user_create
from audit.models import AccessLogEntry
from consent.models import Grant, GrantStatus
from diagnostics.models import TERMINAL_STATUSES, DiagnosticJob, JobResult
from diagnostics.services import MAX_LOST_DELIVERIES, diagnostic_job_request
from diagnostics.tasks import diagnostic_job_run
from ledger.outbox import outbox_relay
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest, patient_create
from tests.integration.conftest import CELERY, REPO, worker_env
from tests.patient_device import grant_issue_signed

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JOBS = 100
KILLS = 3
MODEL = "egfr-ckd-epi-2021"  # reads the Patient and creatinine Observations
# The generated record's last results are from mid-2025: score it as of then, inside the model's lookback.
AS_OF = date(2025, 6, 30)
# Its own queue: a worker of another test run on the same Redis never takes these messages.
QUEUE = f"diag-itest-{os.getpid()}"


def _wait(what: str, check: Callable[[], object], log: Path | None, timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else "(no worker log)"
    raise AssertionError(f"timed out waiting for {what}; worker log tail:\n{tail}")


@pytest.fixture
def worker(anvil, settings, tmp_path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:  # type: ignore[no-untyped-def]
    """`celery worker --pool=prefork -c 2` on the test database, anvil, Redis and this test's queue."""
    log = tmp_path / "worker.log"
    # Short limits for this worker only: a hung job is killed in 8 s, and Redis would hand an
    # unacknowledged message out again after 10 s (a killed child's message is requeued at once).
    env = worker_env(
        settings=settings,
        rpc_url=anvil,
        var_dir=tmp_path,
        CELERY_TASK_SOFT_TIME_LIMIT="6",
        CELERY_TASK_TIME_LIMIT="8",
        CELERY_VISIBILITY_TIMEOUT="10",
    )
    command = [
        str(CELERY), "-A", "healthledger", "worker", "--pool=prefork", "-c", "2", "-l", "INFO",
        "-Q", QUEUE, "-n", f"diag-itest-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait("the worker to be ready", lambda: b"ready." in log.read_bytes(), log, timeout=60)
        yield process, log
    finally:
        process.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        redis.Redis.from_url(django_settings.REDIS_URL).delete(QUEUE)


def _record_with_grant() -> tuple[object, object]:
    alice = user_create(username="alice-diag", password=None, role="patient")
    carol = user_create(username="carol-diag", password=None, role="clinician")
    record = patient_create(user=alice)
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(3, years=1)), actor="system:test", patient=record)
    now = timezone.now()
    grant = grant_issue_signed(
        patient=record, by=alice, grantee=carol, resource_types=["Patient", "Observation"], actions=["run-model"],
        purpose="TREAT", not_before=now - timedelta(minutes=1), not_after=now + timedelta(days=1),
    )  # fmt: skip
    _wait(
        "the grant to be recorded on anvil",
        lambda: outbox_relay() and Grant.objects.get(pk=grant.pk).status == GrantStatus.RECORDED,
        None,
    )
    record.refresh_from_db()
    return record, carol


def test_a_hundred_jobs_survive_a_worker_whose_children_are_killed(worker):
    process, log = worker
    record, carol = _record_with_grant()
    jobs = [
        diagnostic_job_request(requester=carol, patient=record, model_id=MODEL, as_of=AS_OF, enqueue=False)  # type: ignore[arg-type]
        for _ in range(JOBS)
    ]
    ids = [str(job.id) for job in jobs]
    for job_id in ids:
        diagnostic_job_run.apply_async(args=[job_id], queue=QUEUE)

    kills = 0
    deadline = time.monotonic() + 150
    terminal = 0
    while time.monotonic() < deadline:
        terminal = DiagnosticJob.objects.filter(pk__in=ids, status__in=TERMINAL_STATUSES).count()
        if terminal == JOBS:
            break
        # Kill a child while it works on a job, spread over the run.
        due = kills < KILLS and terminal >= (kills + 1) * JOBS // (KILLS + 2)
        if due and DiagnosticJob.objects.filter(pk__in=ids, status="running").exists():
            children = psutil.Process(process.pid).children()
            if children:
                os.kill(children[kills % len(children)].pid, signal.SIGKILL)
                kills += 1
        time.sleep(0.05)
    assert terminal == JOBS, log.read_text(errors="replace")[-4000:]
    assert kills >= KILLS
    assert b"WorkerLostError" in log.read_bytes() or b"SIGKILL" in log.read_bytes()

    done = {str(j.pk): j for j in DiagnosticJob.objects.filter(pk__in=ids)}
    # Exactly one terminal state each; the data supports the model, so each one is a success.
    assert Counter(j.status for j in done.values()) == {"succeeded": JOBS}
    assert all(j.finished_at is not None and 1 <= j.deliveries <= MAX_LOST_DELIVERIES for j in done.values())
    assert sum(j.deliveries for j in done.values()) > JOBS  # the kills really cost deliveries

    # No result stored twice: one JobResult, one RiskAssessment, one Provenance and one release per job.
    results = {str(r.job_id): r for r in JobResult.objects.filter(job_id__in=ids)}
    assert set(results) == set(ids)
    assert Resource.objects.filter(patient=record, resource_type="RiskAssessment").count() == JOBS
    assert Resource.objects.filter(patient=record, resource_type="Provenance").count() == JOBS
    releases = Counter(
        AccessLogEntry.objects.filter(action="diagnostics.result.release", job_id__in=ids).values_list(
            "job_id", flat=True
        )
    )
    assert releases == dict.fromkeys(ids, 1)
    writes = list(
        AccessLogEntry.objects.filter(action="records.write", actor__in=[f"job:{i}" for i in ids]).values_list(
            "actor", "resource_ids"
        )
    )
    # eGFR releases three resources in one write: the RiskAssessment, its Provenance and the eGFR
    # Observation (98979-8), named by the one records.write entry of the job.
    assert Counter(actor for actor, _ in writes) == {f"job:{i}": 1 for i in ids}
    for actor, named in writes:
        result = results[actor.removeprefix("job:")]
        assert [ref.split("/")[0] for ref in named] == ["RiskAssessment", "Observation", "Provenance"]
        assert (named[0], named[2]) == (result.risk_assessment_ref, result.provenance_ref)

    # Every plaintext read is in the log with the job's id: each input a result names was logged as read
    # by that job, and every read a job logged was a permit by the job itself.
    reads = AccessLogEntry.objects.filter(job_id__in=ids, action__in=["records.read", "records.search"])
    logged: dict[str, set[str]] = {}
    for entry in reads:
        assert (entry.actor, entry.outcome) == (f"job:{entry.job_id}", "permit")
        logged.setdefault(entry.job_id, set()).update(entry.resource_ids)
    for job_id, result in results.items():
        assert result.input_refs
        assert set(result.input_refs) <= logged[job_id]
