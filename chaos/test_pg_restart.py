"""PostgreSQL really restarted under load: the machine's server, `pg_ctlcluster ... restart`.

Load as in the fault-proxy restart (chaos/test_faults.py): three clients call `$diagnose` with an
Idempotency-Key each, two read a FHIR Observation; a gunicorn node and a Celery worker use the server
directly. Checked: every answer during the outage is a success or 503 with Retry-After (no 500, no
missing answer), nothing half-written (each job has its dispatch row and its permit entry), a retry with
the same key makes no second job, every accepted job ends with exactly one result, and the shared check.

The server is shared by everything on the machine, so this runs only where restarting it is allowed:
as root, and with CHAOS_PG_RESTART=1 or in CI (CI=true: CI runs alone on its machine). Whatever happens,
the server is left running (started again in the fixture's teardown, then pg_isready waited for).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from audit.models import AccessLogEntry
from chaos import checks
from chaos.cluster import Answer, Traffic, WebNode, web_env
from chaos.conftest import SHORT
from chaos.test_faults import (
    _retry_until_accepted,
    bearer_session,
    diagnose_path,
    jobs_outcome,
    observation_path,
    run_jobs_to_the_end,
)
from diagnostics.models import DiagnosticJob

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LOAD_BEFORE_S = 1.0 if SHORT else 3.0
LOAD_AFTER_S = 1.0 if SHORT else 5.0


def _restart_refused() -> str | None:
    """Why this machine's server may not be restarted here, or None when it may."""
    if os.geteuid() != 0:
        return "restarting PostgreSQL needs root"
    if os.environ.get("CHAOS_PG_RESTART") != "1" and os.environ.get("CI") != "true":
        return "restarts the machine's shared PostgreSQL: set CHAOS_PG_RESTART=1 (CI=true does) to run it"
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        return "needs a Debian PostgreSQL cluster (pg_ctlcluster, /etc/postgresql)"
    if connection.vendor != "postgresql" or connection.settings_dict["HOST"] not in ("127.0.0.1", "localhost", ""):
        return "DATABASE_URL must name this machine's PostgreSQL"
    return None


class Server:
    """The machine's PostgreSQL cluster `main`, restarted and waited for."""

    def __init__(self) -> None:
        self.version = sorted(os.listdir("/etc/postgresql"))[-1]
        self.port = str(connection.settings_dict["PORT"] or 5432)

    def ctl(self, action: str) -> None:
        subprocess.run(  # noqa: S603 - fixed command line
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", action],  # noqa: S607
            check=True,
            capture_output=True,
            timeout=120,
        )

    def ready(self) -> bool:
        command = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", self.port]
        return subprocess.run(command, check=False, timeout=10).returncode == 0  # noqa: S603

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds until the server accepts connections again."""
        started = time.monotonic()
        while not self.ready():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"PostgreSQL not ready {timeout:g} s after the restart")
            time.sleep(0.1)
        return time.monotonic() - started


@pytest.fixture
def pg_server():  # type: ignore[no-untyped-def]
    reason = _restart_refused()
    if reason:
        pytest.skip(reason)
    server = Server()
    try:
        yield server
    finally:
        if not server.ready():
            server.ctl("start")
        server.wait_ready()
        connection.close()  # the test's own connection died with the restart: pytest-django flushes on a new one


def test_postgres_really_restarted_under_load(pg_server, worker, own_redis, tmp_path, record):  # type: ignore[no-untyped-def]
    from chaos.test_scenarios import _canary_record

    worker.env["CELERY_VISIBILITY_TIMEOUT"] = "10"
    web = WebNode("web", web_env(worker.env), tmp_path / "web.log")
    try:
        web.start()
        worker.start()
        alice, patient, canary = _canary_record()
        session = bearer_session(alice)
        path = diagnose_path(patient)
        read_path = observation_path(patient)
        traffic = Traffic()
        posts: list[Answer] = []
        stop = threading.Event()

        def post(n: int) -> None:
            m = 0
            while not stop.is_set():
                posts.append(traffic.call(session, "POST", web.url, path, key=f"pg-restart-{n}-{m}"))
                m += 1
                time.sleep(0.3)

        def read() -> None:
            while not stop.is_set():
                traffic.call(session, "GET", web.url, read_path)
                time.sleep(0.05)

        clients = [threading.Thread(target=post, args=(n,)) for n in range(3)]
        clients += [threading.Thread(target=read) for _ in range(2)]
        for thread in clients:
            thread.start()
        time.sleep(LOAD_BEFORE_S)
        restart_at = time.monotonic()
        pg_server.ctl("restart")
        pg_server.wait_ready()
        up_at = time.monotonic()
        outage = up_at - restart_at
        deadline = up_at + 30
        while time.monotonic() < deadline and not all(
            any(a.status in (200, 202) and a.started > up_at and a.method == m for a in list(traffic.answers))
            for m in ("GET", "POST")
        ):
            time.sleep(0.1)
        time.sleep(LOAD_AFTER_S)
        stop.set()
        for thread in clients:
            thread.join()
        connection.close()  # the test's own connection died with the restart
        back = {
            m: [a.ended for a in traffic.answers if a.method == m and a.status in (200, 202) and a.started > up_at]
            for m in ("GET", "POST")
        }
        recovery = max(min(ends) - up_at if ends else float("inf") for ends in back.values())
        failed_after = [a for a in traffic.answers if a.started > up_at + 1 and a.status not in (200, 202)]
        refused = [a for a in traffic.answers if a.status not in (200, 202)]
        wrong = [a for a in refused if a.status != 503 or not a.retry_after]
        reads = [a for a in traffic.answers if a.method == "GET"]
        final = _retry_until_accepted(session, web.url, path, posts, traffic)
        ids = sorted({a.location.rsplit("/", 1)[1] for a in final if a.status == 202})
        started = time.monotonic()
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
        finished_s = time.monotonic() - started
        canaries = (
            checks.redis_hits(canary, own_redis.url)
            + checks.file_hits(canary, [tmp_path])
            + sum(canary in a.body for a in traffic.answers if a.method == "POST" or a.status != 200)
            + checks.rows_hits(canary)
        )
        record(
            scenario="postgres restarted under load",
            faults=(
                f"pg_ctlcluster {pg_server.version} main restart (down {outage:.1f} s until pg_isready); "
                f"{len(posts)} $diagnose, {len(reads)} FHIR reads; {len(refused)} refused, {len(wrong)} "
                f"without 503+Retry-After, {len(failed_after)} failed over 1 s after; {half_written} "
                f"half-written; jobs final {finished_s:.1f} s after; canary hits {canaries}"
            ),
            accepted=len(ids),
            recovery_s=round(recovery, 1),
            **outcome,
        )
    finally:
        web.kill()
    assert wrong == []
    assert failed_after == []  # every web thread and the worker reconnected by themselves
    assert half_written == 0
    assert len(ids) == len(posts)
    assert outcome == {"lost": 0, "duplicated": 0, "unlogged_reads": 0}
    assert recovery < 10
    assert canaries == 0
