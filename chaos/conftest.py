"""`make chaos`: faults against real processes, one result row per scenario.

Each scenario records `{"scenario", "faults", "accepted", "lost", "duplicated", "unlogged_reads",
"recovery_s"}` and the shared check run after it, as "checks" (chaos/checks.py); at the end the rows
are printed as one table and written to chaos/results.json
(CHAOS_RESULTS to write elsewhere). CHAOS_SHORT=1 runs each scenario with fewer jobs and grants, for CI.
Needs PostgreSQL (DATABASE_URL), redis-server on PATH and anvil (npm install), as tests/integration does,
and haproxy for the two-web-node scenario (.ci/run installs it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import token_for  # noqa: F401 - real OAuth tokens for the clinician
from tests.integration.conftest import (
    anvil,  # noqa: F401
    worker_env,
)
from tests.integration.test_job_dispatch_worker import Worker, own_redis  # noqa: F401 - fixtures for the scenarios

SHORT = os.environ.get("CHAOS_SHORT", "") not in ("", "0", "false")
RESULTS_PATH = Path(os.environ.get("CHAOS_RESULTS") or Path(__file__).with_name("results.json"))
FIELDS = ("scenario", "faults", "accepted", "lost", "duplicated", "unlogged_reads", "recovery_s")
_results: list[dict[str, Any]] = []


@pytest.fixture
def worker(anvil, own_redis, settings, tmp_path) -> Iterator[Worker]:  # type: ignore[no-untyped-def]  # noqa: F811
    """tests/integration's worker, but killed at the end instead of a warm shutdown: the scenario is over and
    checked by then, and waiting for each worker to finish politely cost the short run half a minute."""
    env = worker_env(settings=settings, rpc_url=anvil, var_dir=tmp_path, REDIS_URL=own_redis.url)
    process = Worker(env, tmp_path / "worker.log")
    yield process
    if process.process is not None:
        from chaos.cluster import kill_tree

        kill_tree(process.process)
        process.process = None


@pytest.fixture
def record():  # type: ignore[no-untyped-def]
    """Record one scenario's outcome (call it before the scenario's asserts, so a failure is still reported),
    while its services still run: the shared check (chaos.checks.after_scenario) runs here, is recorded
    beside the row, and fails the scenario when any part of it failed."""

    def add(*, tampered: bool = False, **row: Any) -> None:
        """tampered: the scenario forged the log on purpose, so verify_access_log must fail (catch it)."""
        from chaos.checks import after_scenario

        missing = set(FIELDS) - set(row)
        if missing:
            raise ValueError(f"chaos result without {sorted(missing)}")
        checks = after_scenario(tampered=tampered)
        _results.append({**{name: row[name] for name in FIELDS}, "checks": checks})
        assert checks["ok"], f"after {row['scenario']!r}: {checks}"

    return add


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if not _results:
        return
    RESULTS_PATH.write_text(json.dumps(_results, indent=1) + "\n")
    columns = (*FIELDS, "checks")
    rows = [{**row, "checks": "ok" if row["checks"]["ok"] else "FAILED"} for row in _results]
    widths = [max(len(name), *(len(str(row[name])) for row in rows)) for name in columns]
    terminalreporter.write_sep("=", "chaos results")
    terminalreporter.write_line("  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True)))
    for row in rows:
        terminalreporter.write_line(
            "  ".join(str(row[name]).ljust(width) for name, width in zip(columns, widths, strict=True))
        )
    terminalreporter.write_line(f"written to {RESULTS_PATH}")
