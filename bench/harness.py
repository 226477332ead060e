"""Runs every benchmark in one process and writes bench/results.json.

Each benchmark module exposes `run() -> list[Figure]` and measures the variants it
compares side by side in the same run, so that ratios survive a noisy machine.
The harness gives the run its own var directory (fresh SQLite, fresh keys) unless
DATABASE_URL points at PostgreSQL, where it uses a throwaway database.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
FIXTURES = Path(os.environ.get("HEALTHLEDGER_SYNTHEA_DIR") or ROOT.parent / "shared" / "fixtures" / "synthea-r4")

# In the order they run; later issues append theirs.
BENCHMARKS = [
    "bench.bench_ingest",
    "bench.bench_read",
    "bench.bench_verify",
    "bench.bench_gas",
    "bench.bench_decision",
    "bench.bench_diagnostics",
    "bench.bench_api",
    "bench.bench_api_export",
    "bench.bench_research",
]


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    goal: str = ""
    met: bool | None = None


def timed(fn, *, repeat: int = 1) -> float:  # type: ignore[no-untyped-def]
    """Best wall time of `repeat` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


# What setup_databases created, for teardown_databases at the end of the run (PostgreSQL only).
_TEARDOWN: list[object] = []


def _teardown_django() -> None:
    if _TEARDOWN:
        from django.db import connections
        from django.test.utils import teardown_databases

        connections.close_all()
        teardown_databases(_TEARDOWN, verbosity=0)
        _TEARDOWN.clear()


def _setup_django(workdir: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthledger.settings")
    os.environ["HEALTHLEDGER_VAR_DIR"] = str(workdir)
    os.environ["HEALTHLEDGER_KEYS_DIR"] = str(workdir / "keys")
    # Measured as deployed: DEBUG off (no query recording around every cursor), keys in this run's files.
    os.environ.setdefault("DJANGO_DEBUG", "false")
    # Plain HTTP on 127.0.0.1, as behind the TLS proxy: no redirect to https (which answers every request 301).
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("HEALTHLEDGER_ALLOW_KEY_FILES", "true")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + os.urandom(16).hex())
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "postgresql":
        # A throwaway database so benchmarks never touch real data.
        from django.test.utils import setup_databases

        # Its own database per run, so a benchmark never drops a test run's database or another bench run's.
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"healthledger_bench_{os.getpid()}"
        _TEARDOWN.extend(setup_databases(verbosity=0, interactive=False, keepdb=False))
    else:
        settings.DATABASES["default"]["NAME"] = str(workdir / "bench.sqlite3")
        connection.close()
        call_command("migrate", verbosity=0)


def main(argv: list[str]) -> int:
    selected = [name for name in BENCHMARKS if not argv or any(arg in name for arg in argv)]
    workdir = Path(tempfile.mkdtemp(prefix="healthledger-bench-"))
    _setup_django(workdir)
    try:
        return _run(selected, partial=bool(argv))
    finally:
        _teardown_django()


def _run(selected: list[str], *, partial: bool) -> int:
    figures: list[Figure] = []
    failures: list[str] = []
    for module_name in selected:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not written yet
            raise
        print(f"== {module_name}", flush=True)
        try:
            produced = module.run()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failures.append(f"{module_name}: {type(exc).__name__}: {exc}")
            print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        for figure in produced:
            print(
                f"   {figure.name:<58} {figure.value:>14,.3f} {figure.unit:<14} {figure.goal:<14} "
                f"{'' if figure.met is None else ('met' if figure.met else 'NOT MET')}",
                flush=True,
            )
        figures.extend(produced)
    previous: list[dict[str, object]] = []
    if partial and RESULTS.exists():  # a partial run keeps the other figures
        names = {f.name for f in figures}
        previous = [row for row in json.loads(RESULTS.read_text()) if row.get("name") not in names]
    RESULTS.write_text(json.dumps(previous + [asdict(f) for f in figures], indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)} ({len(figures)} figures)")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
