"""Accepted jobs survive a broker that goes away: a real worker process, a Redis of the test's own, PostgreSQL.

1. Redis is killed; jobs are accepted anyway (the publish fails at once, the rows stay owed); Redis comes
   back empty; the dispatcher publishes them and the worker runs each exactly once.
2. Jobs are published, then Redis is killed and restarted without its data (no persistence) before the
   worker takes them: their messages are gone. The sweeper finds no message for them, re-dispatches them,
   and the worker runs each exactly once.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import orjson
import pytest
import redis
from django.utils import timezone

from accounts.services import user_create
from diagnostics import dispatch
from diagnostics.dispatch import job_dispatch_pending
from diagnostics.models import DiagnosticJob, JobDispatch, JobResult
from diagnostics.services import diagnostic_job_request
from healthledger.celery import app as celery_app
from records.demo import generate_patient_bundle
from records.services import fhir_ingest, patient_create
from tests.integration.conftest import CELERY, REPO, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JOBS = 6
MODEL = "egfr-ckd-epi-2021"  # reads the Patient and creatinine Observations
# The generated record's last results are from mid-2025: score it as of then.
AS_OF = date(2025, 6, 30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(what: str, check: Callable[[], object], log: Path | None = None, timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


class OwnRedis:
    """A redis-server that keeps nothing on disk, on a fixed port: killed and started again, it is empty."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("needs redis-server on PATH")
        self.binary, self.port, self.dir = binary, _free_port(), tmp
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        _wait("redis to answer", lambda: _pings(client), timeout=10)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis(tmp_path, settings) -> Iterator[OwnRedis]:  # type: ignore[no-untyped-def]
    server = OwnRedis(tmp_path)
    server.start()
    before = (celery_app.conf.broker_url, celery_app.conf.task_always_eager)
    settings.CELERY_BROKER_URL = server.url
    celery_app.conf.broker_url = server.url
    celery_app.conf.task_always_eager = False
    dispatch._breaker_reset()
    yield server
    server.kill()
    celery_app.conf.broker_url, celery_app.conf.task_always_eager = before
    dispatch._breaker_reset()


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.process = env, log, None  # type: ignore[var-annotated]

    def start(self) -> None:
        command = [str(CELERY), "-A", "healthledger", "worker", "--pool=prefork", "-c", "2", "-l", "INFO",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        _wait("the worker to be ready", lambda: b"ready." in self.log.read_bytes()[offset:], self.log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@pytest.fixture
def worker(anvil, own_redis, settings, tmp_path) -> Iterator[Worker]:  # type: ignore[no-untyped-def]
    env = worker_env(settings=settings, rpc_url=anvil, var_dir=tmp_path, REDIS_URL=own_redis.url)
    env["REDIS_URL"] = own_redis.url
    process = Worker(env, tmp_path / "worker.log")
    yield process
    process.stop()


def _own_record():  # type: ignore[no-untyped-def]
    alice = user_create(username="alice-dispatch", password=None, role="patient")
    record = patient_create(user=alice)
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(3, years=1)), actor="system:test", patient=record)
    record.refresh_from_db()
    return alice, record


def _accept(alice, record, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        str(diagnostic_job_request(requester=alice, patient=record, model_id=MODEL, as_of=AS_OF).id)
        for _ in range(count)
    ]


def _all_done_once(ids: list[str], log: Path) -> None:
    _wait(
        "every job to finish",
        lambda: DiagnosticJob.objects.filter(pk__in=ids, finished_at__isnull=False).count() == len(ids),
        log,
        timeout=90,
    )
    assert Counter(DiagnosticJob.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"succeeded": len(ids)}
    assert JobResult.objects.filter(job_id__in=ids).count() == len(ids)
    assert set(DiagnosticJob.objects.filter(pk__in=ids).values_list("deliveries", flat=True)) == {1}


def test_jobs_accepted_while_redis_is_down_run_once_when_it_returns(worker, own_redis):
    worker.start()
    alice, record = _own_record()
    own_redis.kill()

    started = time.monotonic()
    ids = _accept(alice, record, JOBS)
    accepted_in = time.monotonic() - started

    assert accepted_in < 5  # one failed publish, then the breaker: nobody waits on a dead broker
    assert JobDispatch.objects.filter(job_id__in=ids, published_at__isnull=True).count() == JOBS
    assert set(DiagnosticJob.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"queued"}

    own_redis.start()  # back, and empty
    JobDispatch.objects.filter(job_id__in=ids).update(next_attempt_at=timezone.now())  # backoff passed
    report = job_dispatch_pending()

    assert (report.published, report.failed) == (JOBS, 0)
    _all_done_once(ids, worker.log)


def test_jobs_whose_messages_redis_lost_are_found_by_the_sweeper_and_run_once(worker, own_redis, settings):
    alice, record = _own_record()
    ids = _accept(alice, record, JOBS)  # published; no worker is running yet
    assert redis.Redis.from_url(own_redis.url).llen("celery") == JOBS
    own_redis.kill()
    own_redis.start()  # restarted without its data: the messages are gone
    settings.JOB_REDISPATCH_SECONDS = 1
    time.sleep(1.2)

    report = job_dispatch_pending()

    assert (report.swept, report.redispatched) == (True, JOBS)
    assert set(JobDispatch.objects.filter(job_id__in=ids).values_list("publishes", flat=True)) == {2}
    worker.start()
    _all_done_once(ids, worker.log)
    # Done jobs are never swept again.
    time.sleep(1.2)
    assert job_dispatch_pending().redispatched == 0
