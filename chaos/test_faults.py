"""Faults on the network between a real web node and its services, through chaos/faultproxy.py.

- Redis slow (latency on every chunk): the web node stays responsive and `$diagnose` answers within its bound.
- PostgreSQL connections cut mid-request: every answer is the job (202) or 503 with Retry-After, never a 500;
  nothing half-written (each job has its dispatch row and its log entry); a retry with the same
  Idempotency-Key makes no second job.
- PostgreSQL restarted under load, simulated by the proxy (every connection cut, new ones refused for a few
  seconds, then accepted); the real restart of the machine's server is chaos/test_pg_restart.py.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.utils import timezone

from audit.models import AccessLogEntry
from chaos import checks
from chaos.cluster import Answer, Traffic, WebNode, web_env
from chaos.conftest import SHORT
from chaos.faultproxy import FaultProxy
from diagnostics.dispatch import job_dispatch_pending
from diagnostics.models import DiagnosticJob, JobDispatch
from records.models import Resource
from tests.integration.test_job_dispatch_worker import MODEL

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JOBS = 6 if SHORT else 24
RESTART_S = 1.5 if SHORT else 6.0


def bearer_session(user) -> requests.Session:  # type: ignore[no-untyped-def]
    from oauth2_provider.models import AccessToken

    token = secrets.token_urlsafe(32)
    AccessToken.objects.create(
        user=user, token=token, expires=timezone.now() + timedelta(hours=1), scope="user/*.cruds"
    )
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def diagnose_path(patient) -> str:  # type: ignore[no-untyped-def]
    return f"/fhir/Patient/{patient.fhir_id}/$diagnose?model={MODEL}&as-of=2025-06-30"


def observation_path(patient) -> str:  # type: ignore[no-untyped-def]
    resource = Resource.objects.filter(patient=patient, resource_type="Observation").order_by("pk").first()
    return f"/fhir/Observation/{resource.fhir_id}"


def run_jobs_to_the_end(ids: list[str], timeout: float = 120) -> None:
    """Beat's ticks, from here: the dispatcher publishes what is owed, the sweeper re-sends what is lost."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not DiagnosticJob.objects.filter(pk__in=ids, finished_at__isnull=True).exists():
            return
        JobDispatch.objects.filter(job_id__in=ids, published_at__isnull=True).update(next_attempt_at=timezone.now())
        job_dispatch_pending()
        time.sleep(1)


def jobs_outcome(ids: list[str]) -> dict[str, int]:
    """lost: accepted jobs not succeeded with one result; duplicated: jobs beyond one per Idempotency-Key."""
    from chaos.test_scenarios import _jobs_outcome

    patient = DiagnosticJob.objects.filter(pk__in=ids).first().patient
    return _jobs_outcome(ids, patient)


def proxied(url: str, port: int) -> str:
    head, _, tail = url.rpartition("@")
    _, _, rest = tail.partition("/")
    return f"{head}@127.0.0.1:{port}/{rest}" if head else f"redis://127.0.0.1:{port}/{rest}"


@pytest.fixture
def pg_proxy():  # type: ignore[no-untyped-def]
    proxy = FaultProxy(int(connection.settings_dict["PORT"] or 5432)).start()
    yield proxy
    proxy.stop()


def test_redis_slow_web_stays_responsive(worker, own_redis, tmp_path, record):  # type: ignore[no-untyped-def]
    from chaos.test_scenarios import _canary_record

    slow = FaultProxy(own_redis.port).start()
    web = WebNode("web", web_env(worker.env, REDIS_URL=f"redis://127.0.0.1:{slow.port}/0"), tmp_path / "web.log")
    try:
        web.start()
        worker.start()
        alice, patient, canary = _canary_record()
        session = bearer_session(alice)
        traffic = Traffic()
        slow.latency(0.5)  # per chunk, each way: a publish (connect, several round trips) takes seconds
        done = threading.Event()

        def diagnose(n: int) -> None:
            for m in range(n, JOBS, 3):
                traffic.call(session, "POST", web.url, diagnose_path(patient), key=f"slow-{m}")

        read_path = observation_path(patient)

        def read(path: str) -> None:
            while not done.is_set():
                traffic.call(session, "GET", web.url, path)

        readers = [threading.Thread(target=read, args=(p,)) for p in (read_path, read_path, "/healthz")]
        posters = [threading.Thread(target=diagnose, args=(n,)) for n in range(3)]
        for thread in [*readers, *posters]:
            thread.start()
        for thread in posters:
            thread.join()
        done.set()
        for thread in readers:
            thread.join()
        slow.latency(0)
        posts = [a for a in traffic.answers if a.method == "POST"]
        reads = [a for a in traffic.answers if a.path.startswith("/fhir/Observation")]
        health = [a for a in traffic.answers if a.path == "/healthz"]
        ids = [a.location.rsplit("/", 1)[1] for a in posts if a.status == 202]
        started = time.monotonic()
        run_jobs_to_the_end(ids)
        outcome = jobs_outcome(ids)
        slowest_post = max(a.ended - a.started for a in posts)
        slowest_read = max(a.ended - a.started for a in reads)
        slowest_health = max(a.ended - a.started for a in health)
        canaries = (
            checks.redis_hits(canary, own_redis.url)
            + checks.file_hits(canary, [tmp_path])
            + sum(canary in body for body in traffic.bodies() if b"Observation" not in body[:200])
            + checks.rows_hits(canary)
        )
        record(
            scenario="redis slow (0.5 s a chunk)",
            faults=(
                f"fault proxy latency on redis; slowest $diagnose {slowest_post:.2f} s, FHIR read "
                f"{slowest_read:.2f} s, /healthz {slowest_health:.2f} s ({len(reads)} reads); canary hits {canaries}"
            ),
            accepted=len(ids),
            recovery_s=round(time.monotonic() - started, 1),
            **outcome,
        )
    finally:
        web.kill()
        slow.stop()
    assert [a.status for a in posts] == [202] * JOBS
    assert outcome == {"lost": 0, "duplicated": 0, "unlogged_reads": 0}
    assert slowest_post < 4  # one bounded publish (JOB_PUBLISH_TIMEOUT_SECONDS), then the breaker
    assert slowest_read < 2  # reads never touch Redis
    assert all(a.status == 200 for a in reads)
    assert slowest_health < 4  # /healthz asks Redis with a 1 s timeout
    assert canaries == 0


def _retry_until_accepted(session, url: str, path: str, answers: list[Answer], traffic: Traffic) -> list[Answer]:  # type: ignore[no-untyped-def]
    """Each request that was not accepted, sent again with the same Idempotency-Key until it is."""
    final = []
    for answer in answers:
        again = answer
        for _ in range(10):
            if again.status == 202:
                break
            time.sleep(0.2)
            again = traffic.call(session, "POST", url, path, key=answer.key)
        final.append(again)
    return final


def test_postgres_cut_mid_request_and_restarted_under_load(worker, own_redis, pg_proxy, tmp_path, record):  # type: ignore[no-untyped-def]
    from chaos.test_scenarios import _canary_record

    db_url = proxied(worker.env["DATABASE_URL"], pg_proxy.port)
    worker.env["DATABASE_URL"] = db_url  # the worker's database connections go through the proxy too
    worker.env["CELERY_VISIBILITY_TIMEOUT"] = "10"
    web = WebNode("web", web_env(worker.env, DATABASE_URL=db_url), tmp_path / "web.log")
    try:
        web.start()
        worker.start()
        alice, patient, canary = _canary_record()
        session = bearer_session(alice)
        path = diagnose_path(patient)
        traffic = Traffic()

        # 1. Connections cut while requests are in flight (latency keeps each request in flight longer).
        pg_proxy.latency(0.01)
        stop = threading.Event()

        def cutter() -> None:
            rng = random.Random(5)  # noqa: S311 - timing, not secrets
            while not stop.wait(rng.uniform(0.2, 0.8)):
                pg_proxy.cut()

        cutting = threading.Thread(target=cutter)
        cutting.start()
        first: list[Answer] = []

        def post(n: int) -> None:
            for m in range(n, JOBS, 3):
                first.append(traffic.call(session, "POST", web.url, path, key=f"cut-{m}"))

        posters = [threading.Thread(target=post, args=(n,)) for n in range(3)]
        for thread in posters:
            thread.start()
        for thread in posters:
            thread.join()
        stop.set()
        cutting.join()
        pg_proxy.latency(0)
        cut = pg_proxy.cuts
        statuses = sorted({a.status for a in first})
        refused = [a for a in first if a.status != 202]
        without_retry_after = [a for a in refused if a.status != 503 or not a.retry_after]
        started = time.monotonic()
        final = _retry_until_accepted(session, web.url, path, first, traffic)
        ids = sorted({a.location.rsplit("/", 1)[1] for a in final if a.status == 202})
        run_jobs_to_the_end(ids)
        half_written = DiagnosticJob.objects.filter(pk__in=ids, dispatch__isnull=True).count() + sum(
            1
            for job_id in ids
            if not AccessLogEntry.objects.filter(
                action="diagnostics.job.request", outcome="permit", job_id=job_id
            ).exists()
        )
        outcome = jobs_outcome(ids)
        outcome["duplicated"] += DiagnosticJob.objects.filter(patient=patient).count() - len(ids)
        record(
            scenario="postgres connections cut mid-request",
            faults=(
                f"fault proxy cut every connection every 0.2-0.8 s ({cut} cut); first answers {statuses}, "
                f"{len(refused)} refused; {len(without_retry_after)} without 503+Retry-After; "
                f"{half_written} half-written"
            ),
            accepted=len(ids),
            recovery_s=round(time.monotonic() - started, 1),
            **outcome,
        )
        assert without_retry_after == []
        assert half_written == 0
        assert (len(ids), outcome) == (JOBS, {"lost": 0, "duplicated": 0, "unlogged_reads": 0})

        # 2. A restart under load: every connection cut, none accepted for RESTART_S, then back.
        loaded: list[Answer] = []
        stop = threading.Event()
        up_at: list[float] = []

        def load(n: int) -> None:
            m = 0
            while not stop.is_set():
                loaded.append(traffic.call(session, "POST", web.url, path, key=f"restart-{n}-{m}"))
                m += 1
                time.sleep(0.3)

        clients = [threading.Thread(target=load, args=(n,)) for n in range(3)]
        for thread in clients:
            thread.start()
        time.sleep(1)
        pg_proxy.down()
        time.sleep(RESTART_S)
        pg_proxy.up()
        up_at.append(time.monotonic())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(a.status == 202 and a.started > up_at[0] for a in loaded):
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for thread in clients:
            thread.join()
        back = [a.ended for a in loaded if a.status == 202 and a.started > up_at[0]]
        recovery = min(back) - up_at[0] if back else float("inf")
        refused = [a for a in loaded if a.status != 202]
        without_retry_after = [a for a in refused if a.status != 503 or not a.retry_after]
        final = _retry_until_accepted(session, web.url, path, loaded, traffic)
        restart_ids = sorted({a.location.rsplit("/", 1)[1] for a in final if a.status == 202})
        run_jobs_to_the_end(restart_ids)
        outcome = jobs_outcome(ids + restart_ids)  # one patient: her results are counted across both parts
        outcome["duplicated"] += DiagnosticJob.objects.filter(patient=patient).count() - len(ids) - len(restart_ids)
        canaries = (
            checks.redis_hits(canary, own_redis.url)
            + checks.file_hits(canary, [tmp_path])
            + sum(canary in body for body in traffic.bodies())
            + checks.rows_hits(canary)
        )
        record(
            scenario="postgres restart simulated by the proxy",
            faults=(
                f"fault proxy: all connections cut, refused {RESTART_S:g} s; {len(refused)} refused, "
                f"{len(without_retry_after)} without 503+Retry-After; canary hits {canaries}"
            ),
            accepted=len(restart_ids),
            recovery_s=round(recovery, 1),
            **outcome,
        )
    finally:
        web.kill()
    assert without_retry_after == []
    assert outcome == {"lost": 0, "duplicated": 0, "unlogged_reads": 0}
    assert recovery < 10
    assert canaries == 0
