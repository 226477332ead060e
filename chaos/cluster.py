"""Real web nodes (gunicorn), a real load balancer (haproxy) and HTTP clients for the chaos scenarios.

A web node runs with production-like settings (DEBUG off, so an error page is what a client really
sees) on the test's PostgreSQL database, key files, Redis and chain, like tests/integration's worker.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from tests.integration.conftest import REPO
from tests.integration.test_job_dispatch_worker import _free_port, _wait

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def web_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    """A worker's environment (tests.integration.conftest.worker_env) as a production web node sees it."""
    return {
        **base,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "HEALTHLEDGER_ALLOW_KEY_FILES": "true",
        "SECURE_SSL_REDIRECT": "false",
        "DJANGO_TRUST_X_FORWARDED_PROTO": "false",
        **extra,
    }


class WebNode:
    """gunicorn on a port of its own, in its own process group (killed whole with SIGKILL)."""

    def __init__(self, name: str, env: dict[str, str], log: Path, *, workers: int = 1, threads: int = 8) -> None:
        self.name, self.env, self.log = name, env, log
        self.port = _free_port()
        self.workers, self.threads = workers, threads
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> WebNode:
        command = [sys.executable, "-m", "gunicorn", "healthledger.wsgi:application",
                   "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers), "--threads", str(self.threads),
                   "--graceful-timeout", "5", "--timeout", "60", "--no-control-socket",
                   "--access-logfile", "-", "--access-logformat", '%(h)s "%(m)s %(U)s" %(s)s %(M)sms',
                   "--error-logfile", "-"]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        def answers() -> bool:
            try:
                return requests.get(f"{self.url}/fhir/metadata", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        _wait(f"web node {self.name}", answers, self.log, timeout=60)

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once: the node is gone mid-request."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()
        self.process = None


class LoadBalancer:
    """haproxy in front of the web nodes: round robin, health checks every 500 ms, a connection refused retried
    on the other node (`option redispatch`). A request the dead node had already taken is not re-sent by
    haproxy (the client sees 502 and retries itself), so every read the log holds is one a client asked for
    and either got or saw fail."""

    def __init__(self, nodes: list[WebNode], directory: Path) -> None:
        if not Path(HAPROXY).exists():
            if os.environ.get("CI"):
                pytest.fail("CI must run the load-balancer scenario, but haproxy is not installed")
            pytest.skip("needs haproxy (apt-get install -y haproxy)")
        self.nodes, self.dir = nodes, directory
        self.port = _free_port()
        self.log = directory / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        servers = "\n".join(
            f"    server {node.name} 127.0.0.1:{node.port} check inter 500ms fall 2 rise 2" for node in self.nodes
        )
        return f"""global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
    retry-on conn-failure
frontend web
    bind 127.0.0.1:{self.port}
    default_backend app
backend app
    balance roundrobin
    option httpchk GET /fhir/metadata
{servers}
"""

    def start(self) -> LoadBalancer:
        config = self.dir / "haproxy.cfg"
        config.write_text(self.config())
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                [HAPROXY, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

        def answers() -> bool:
            try:
                return requests.get(f"{self.url}/fhir/metadata", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        _wait("haproxy", answers, self.log, timeout=30)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and every child it has, all at once (a Celery worker and its pool)."""
    main = psutil.Process(process.pid)
    for child in [*main.children(recursive=True), main]:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGKILL)
    process.wait(10)


@dataclass
class Answer:
    """One HTTP exchange a client made: when, what, and what came back (status 0: no answer at all)."""

    method: str
    path: str
    started: float
    ended: float
    status: int
    retry_after: str | None = None
    body: bytes = b""
    key: str = ""
    location: str = ""


@dataclass
class Traffic:
    """Every exchange of a run, from every client thread (list.append is atomic under the GIL)."""

    answers: list[Answer] = field(default_factory=list)

    def call(
        self, session: requests.Session, method: str, url: str, path: str, *, key: str = "", timeout: float = 30
    ) -> Answer:
        headers = {"Idempotency-Key": key} if key else {}
        started = time.monotonic()
        try:
            response = session.request(method, url + path, headers=headers, timeout=timeout)
            answer = Answer(method, path, started, time.monotonic(), response.status_code,
                            response.headers.get("Retry-After"), response.content, key,
                            response.headers.get("Location", ""))  # fmt: skip
        except requests.RequestException:
            answer = Answer(method, path, started, time.monotonic(), 0, key=key)
        self.answers.append(answer)
        return answer

    def bodies(self) -> list[bytes]:
        return [answer.body for answer in self.answers]
