"""`make run`'s processes: children in their own process groups, restarted when they die, stopped in reverse.

The supervisor (Supervisor), and the waits for a child to be ready (wait_until with the Redis,
JSON-RPC and /healthz probes). Stdlib only, plus redis-py to ask the broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scripts.run_commands import ROOT, StartupError

STOP_TIMEOUT = 15.0  # a warm Celery shutdown finishes the running task; give it time before SIGKILL
RESTART_BACKOFF_BASE = 1.0
RESTART_BACKOFF_MAX = 60.0
STABLE_AFTER = 60.0  # a child up this long has its backoff reset


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0  # quick deaths in a row (reset after STABLE_AFTER up)
    restart_at: float | None = None  # when a dead child is due to start again


def restart_backoff(restarts: int) -> float:
    """Seconds to wait before starting a child again after `restarts` quick deaths in a row: 1, 2, 4 ... 60."""
    return min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_BASE * 2 ** min(restarts, 16))


@dataclass
class Supervisor:
    """Starts children in their own process groups and stops them, last started first."""

    log_dir: Path
    env: dict[str, str]
    cwd: Path = ROOT
    stop_timeout: float = STOP_TIMEOUT
    children: list[Child] = field(default_factory=list)

    def _log(self, name: str) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"{name}.log"
        if path.exists():
            path.replace(path.with_suffix(".log.1"))  # keep the previous run's log, one deep
        return path

    def _spawn(self, argv: list[str], log_path: Path, mode: str) -> subprocess.Popen[bytes]:
        with log_path.open(mode) as log:
            return subprocess.Popen(  # noqa: S603 - argv built here, never from input
                argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the terminal's Ctrl-C reaches only us
            )  # fmt: skip

    def start(self, name: str, argv: list[str]) -> Child:
        log_path = self._log(name)
        child = Child(name, self._spawn(argv, log_path, "wb"), log_path, argv=list(argv))
        self.children.append(child)
        return child

    def say(self, message: str) -> None:
        """One line of the supervisor's own log: on its output and in <log_dir>/supervisor.log."""
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: {message}"
        print(line, file=sys.stderr, flush=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / "supervisor.log").open("a") as log:
            log.write(line + "\n")

    def restart_dead(self, now: float | None = None) -> list[Child]:
        """Start again each child that died: first schedule it after its backoff, then start it when due.

        The dead child's process group is killed first (a gunicorn master's workers, a worker's pool
        children may outlive it). Returns the children started again by this call.
        """
        now = time.monotonic() if now is None else now
        started: list[Child] = []
        for child in self.children:
            if child.process.poll() is None:
                continue
            if child.restart_at is None:
                if now - child.started_at >= STABLE_AFTER:
                    child.restarts = 0
                delay = restart_backoff(child.restarts)
                child.restart_at = now + delay
                _signal_group(child.process.pid, signal.SIGKILL)
                self.say(
                    f"{child.name} (pid {child.process.pid}) exited with code {child.process.returncode}; "
                    f"starting it again in {delay:.0f} s (restart {child.restarts + 1}); see {child.log_path}"
                )
                continue
            if now < child.restart_at:
                continue
            child.process = self._spawn(child.argv, child.log_path, "ab")  # same log, appended
            child.started_at, child.restart_at = now, None
            child.restarts += 1
            self.say(f"{child.name} started again (pid {child.process.pid})")
            started.append(child)
        return started

    def run_once(self, name: str, argv: list[str], *, timeout: float, capture: bool = False) -> str:
        """Run a one-shot step to completion. Its output goes to its log; with capture, stdout is returned instead."""
        log_path = self._log(name)
        with log_path.open("wb") as log:
            try:
                done = subprocess.run(  # noqa: S603
                    argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if capture else log, stderr=log,
                    timeout=timeout, check=False, start_new_session=True,
                )  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                raise StartupError(f"{name} did not finish in {timeout:.0f} s; see {log_path}") from exc
        if done.returncode != 0:
            raise StartupError(f"{name} failed with exit code {done.returncode}; see {log_path}\n{tail(log_path)}")
        return done.stdout.decode(errors="replace") if capture else ""

    def first_exited(self) -> Child | None:
        return next((child for child in self.children if child.process.poll() is not None), None)

    def stop_all(self, *, force: Callable[[], bool] = lambda: False) -> None:
        """SIGTERM each child's group, last started first; SIGKILL what is left after the timeout."""
        for child in reversed(self.children):
            _signal_group(child.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while child.process.poll() is None and time.monotonic() < deadline and not force():
                time.sleep(0.05)
            # The leader may be gone while its own children (prefork pool, gunicorn workers) linger.
            _signal_group(child.process.pid, signal.SIGKILL)
            child.process.wait()
        self.children.clear()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone, or reused by another user
        os.killpg(pgid, signum)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


# --- Waiting for readiness ---------------------------------------------------------------


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, alive: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and alive.process.poll() is not None:
            raise StartupError(
                f"{alive.name} exited with code {alive.process.returncode} while starting; "
                f"see {alive.log_path}\n{tail(alive.log_path)}"
            )
        if check():
            return
        time.sleep(0.2)
    raise StartupError(f"{what} was not ready after {timeout:.0f} s")


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def json_rpc_answers(url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=1) as response:  # noqa: S310 - loopback URL we built
            return "result" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def healthz(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL we built
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return 0, ""
