"""The FHIR API over real HTTP: gunicorn on this machine, wrk as the load generator, 16 connections.

Variants, measured in one run: ten short rounds, each running every variant back to back in a rotated
order. Throughput and latency are the median round's; a ratio is taken within each round (variants
that ran seconds apart) and the median over rounds reported, so the machine's noise hits all alike:
- gated read: GET /fhir/Observation/<id> with a clinician's bearer token: token lookup, consent
  decision on a recorded grant, decrypt, access-log row committed (durably) before the response;
- bare DRF read: a DRF APIView with the same authentication that looks the row up and returns the
  same plaintext bytes (no decision, no decrypt, no log);
- stock DRF read: a RetrieveAPIView with a ModelSerializer of the same resource row;
- gated search returning 100 Observations of one patient, and its bare variant;
- the same search with `_include=Observation:encounter` (the Encounters the page names, a second gated search).

BENCH_API_WORKERS and BENCH_API_THREADS set gunicorn's workers (default two per CPU) and threads (1);
BENCH_API_WORKER_CONNECTIONS the keep-alive connections a worker takes (default: its even share of 16).

wrk comes from Debian (`apt-get install -y wrk`); without it these figures are skipped with a message.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from bench.harness import ROOT, Figure

CONNECTIONS = 16
WRK_THREADS = 2
# Many short rounds (BENCH_API_ROUNDS, default 10: with six, the median ratio still moved by 0.05 between
# idle runs), each running every variant back to back in a rotated order: on this noisy
# machine a ratio is taken within a round (neighbours in time) and the median over rounds reported.
DURATION_SECONDS = 3
ROUNDS = int(os.environ.get("BENCH_API_ROUNDS", "10"))
GUNICORN_WORKERS = int(os.environ.get("BENCH_API_WORKERS", str(2 * (os.cpu_count() or 2))))
# One thread per worker measured best here (less GIL contention with wrk and PostgreSQL on 2 cores).
GUNICORN_THREADS = int(os.environ.get("BENCH_API_THREADS", "1"))
# Each worker holds at most its share of the keep-alive connections. Left to race for them (gunicorn's
# default, 1000 each), one worker could hold six of the sixteen and serve each at a sixth of its pace:
# that worker's clients made the tail (p99 twice the median), not the requests themselves.
WORKER_CONNECTIONS = int(os.environ.get("BENCH_API_WORKER_CONNECTIONS", str(-(-CONNECTIONS // GUNICORN_WORKERS))))
# PostgreSQL group commit: a committing session waits this long (microseconds) for others to share its
# WAL flush when at least COMMIT_SIBLINGS other transactions are open. Set per session, for the server only.
COMMIT_DELAY_US = int(os.environ.get("BENCH_API_COMMIT_DELAY_US", "0"))
COMMIT_SIBLINGS = 2
SEARCH_SIZE = 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _setup(workdir: Path):  # type: ignore[no-untyped-def]
    """A patient with five years of data, a clinician with a recorded read grant and a token, the bare bytes."""
    import orjson
    from django.test import Client
    from django.utils import timezone
    from oauth2_provider.models import Application

    from accounts.services import user_create
    from consent.gate import Caller, resource_read
    from consent.models import Grant, GrantStatus
    from records.demo import generate_patient_bundle
    from records.models import Resource
    from records.services import fhir_ingest, patient_create

    tag = secrets.token_hex(4)
    owner = user_create(username=f"bench-api-patient-{tag}", password=None, role="patient")
    clinician = user_create(username=f"bench-api-clinician-{tag}", password=None, role="clinician")
    patient = patient_create(user=owner)
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(31, years=10)), actor="system:bench", patient=patient)
    patient.refresh_from_db()
    now = timezone.now()
    Grant.objects.create(
        id="0x" + secrets.token_hex(32), patient=patient, grantee=clinician,
        resource_types=["Observation", "Encounter"], actions=["read"], purpose="TREAT",
        not_before=now - timedelta(days=1), not_after=now + timedelta(days=30),
        patient_address="0x" + "11" * 20, grantee_address="0x" + "22" * 20, salt="0x" + "33" * 32,
        commitment_salt="0x" + "44" * 32, scope_commitment="0x" + "55" * 32, signature="0x" + "66" * 65,
        status=GrantStatus.RECORDED,
    )  # fmt: skip
    observation = Resource.objects.filter(patient=patient, resource_type="Observation").order_by("pk").first()
    assert observation is not None
    observations = Resource.objects.filter(patient=patient, resource_type="Observation").count()
    assert observations >= SEARCH_SIZE, observations
    secret = secrets.token_urlsafe(32)
    app = Application.objects.create(
        name="bench", user=clinician, client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS, client_secret=secret,
    )  # fmt: skip
    response = Client().post(
        "/oauth/token/",
        {"grant_type": "client_credentials", "scope": "user/Observation.rs user/Encounter.rs",
         "client_id": app.client_id, "client_secret": secret},
    )  # fmt: skip
    assert response.status_code == 200, response.content
    token = response.json()["access_token"]
    plaintext = resource_read(
        caller=Caller(actor=clinician, purpose="TREAT"),
        patient=patient,
        resource_type="Observation",
        resource_id=observation.fhir_id,
    )
    (workdir / "read.json").write_bytes(plaintext)
    search = Client().get(
        f"/fhir/Observation?patient={patient.fhir_id}&_count={SEARCH_SIZE}", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert search.status_code == 200
    assert orjson.loads(search.content)["total"] >= SEARCH_SIZE
    (workdir / "search.json").write_bytes(search.content)
    return token, observation.fhir_id, patient.fhir_id


def _steady_state() -> None:
    """VACUUM ANALYZE the freshly written bench database before measuring, as autovacuum leaves a live one.

    Otherwise autovacuum (its insert threshold) runs part-way through the rounds: the planner's statistics
    and the visibility map (index-only counts) change under the variants, and rounds before and after
    it measure different databases.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def _database_url() -> tuple[str, str]:
    """The bench database for the server processes, and what makes its commits durable."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            durable = f"PostgreSQL synchronous_commit={cursor.fetchone()[0]}"
        host, port = db["HOST"] or "127.0.0.1", db["PORT"] or "5432"
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        url = f"postgres://{db['USER'] or 'postgres'}{password}@{host}:{port}/{db['NAME']}"
        if COMMIT_DELAY_US:
            url += f"?options=-c%20commit_delay%3D{COMMIT_DELAY_US}%20-c%20commit_siblings%3D{COMMIT_SIBLINGS}"
            durable += f", commit_delay={COMMIT_DELAY_US}us commit_siblings={COMMIT_SIBLINGS}"
        return url, durable
    raise RuntimeError("the API benchmark needs PostgreSQL")


def _start_server(workdir: Path, port: int, database_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": "600",
        "DJANGO_DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "BENCH_API_PLAINTEXT": str(workdir / "read.json"),
        "BENCH_API_SEARCHSET": str(workdir / "search.json"),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [
        str(gunicorn), "bench.api_server:application", "--bind", f"127.0.0.1:{port}",
        "--workers", str(GUNICORN_WORKERS), "--threads", str(GUNICORN_THREADS), "--worker-class", "gthread",
        "--keep-alive", "30", "--log-level", "warning", "--worker-connections", str(WORKER_CONNECTIONS),
    ]  # fmt: skip
    log = (workdir / "gunicorn.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.3)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("gunicorn did not answer /fhir/metadata in 60 s; see " + str(workdir / "gunicorn.log"))


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT[unit]


def _wrk(url: str, token: str) -> dict[str, float]:
    command = [
        "wrk", "-t", str(WRK_THREADS), "-c", str(CONNECTIONS), "-d", f"{DURATION_SECONDS}s", "--latency",
        "-H", f"Authorization: Bearer {token}", url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=DURATION_SECONDS + 30).stdout
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    if failed or errors:
        raise RuntimeError(f"wrk saw failures on {url}: {failed.group(0) if failed else errors.group(0)}")  # type: ignore[union-attr]
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    }


def _merge(runs: list[dict[str, float]]) -> dict[str, float]:
    # The median round for throughput and latency; requests add up (every one of them is checked against the log).
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50": statistics.median(r["p50"] for r in runs),
        "p99": statistics.median(r["p99"] for r in runs),
        "p99_worst": max(r["p99"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
    }


def _ratio(runs: dict[str, list[dict[str, float]]], a: str, b: str) -> float:
    """Median over rounds of a's throughput over b's in the same round."""
    return statistics.median(x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b], strict=True))


def _read_log_rows() -> int:
    from audit.models import AccessLogEntry

    return AccessLogEntry.objects.filter(action="records.read", outcome="permit").count()


def _wrk_install() -> bool:
    """Install wrk from Debian when it is missing and this process may (as .ci/run does Chromium); say so loudly."""
    if shutil.which("wrk") is not None:
        return True
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return False
    print("   installing wrk (apt-get install -y wrk) for the API benchmark", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"   could not install wrk: {' '.join(command)} failed: {done.stderr.strip()[-300:]}", flush=True)
            return False
    return shutil.which("wrk") is not None


def run() -> list[Figure]:
    if not _wrk_install():
        print(
            "   SKIPPED: wrk is not installed and could not be installed here (Debian: apt-get install -y wrk); "
            "no API throughput figures",
            flush=True,
        )
        return []
    from django.db import connection

    if connection.vendor != "postgresql":
        # Several gunicorn processes each committing a log row per read: SQLite takes one writer at a time,
        # and what it measures is its file lock. Deployments serve the API from PostgreSQL.
        print(
            "   SKIPPED: the API benchmark runs against PostgreSQL "
            "(DATABASE_URL=postgres://... make bench BENCH=bench_api)",
            flush=True,
        )
        return []
    workdir = Path(os.environ.get("HEALTHLEDGER_VAR_DIR", "/tmp")) / "bench-api"
    workdir.mkdir(parents=True, exist_ok=True)
    token, observation_id, patient_id = _setup(workdir)
    _steady_state()
    database_url, durability = _database_url()
    port = _free_port()
    server = _start_server(workdir, port, database_url)
    base = f"http://127.0.0.1:{port}"
    variants = {
        "gated": f"{base}/fhir/Observation/{observation_id}",
        "bare": f"{base}/bench/bare/Observation/{observation_id}",
        "stock": f"{base}/bench/stock/Observation/{observation_id}",
        "search": f"{base}/fhir/Observation?patient={patient_id}&_count={SEARCH_SIZE}",
        "bare-search": f"{base}/bench/bare-search/Observation?patient={patient_id}",
        # The same page with the Encounters it names: a second gated search (by id) of the same record.
        "search-include": f"{base}/fhir/Observation?patient={patient_id}&_count={SEARCH_SIZE}"
        "&_include=Observation:encounter",
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    try:
        for url in variants.values():  # warm every worker's connection and caches
            warm = ["wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", "1s", "-H", f"Authorization: Bearer {token}", url]
            subprocess.run(warm, capture_output=True, check=True, timeout=30)
        logged_before = _read_log_rows()
        names = list(variants)
        for round_number in range(ROUNDS):
            shift = round_number % len(names)  # rotated, so no variant always follows the same one
            for name in names[shift:] + names[:shift]:
                runs[name].append(_wrk(variants[name], token))
        logged = _read_log_rows() - logged_before
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    gated, bare, stock = _merge(runs["gated"]), _merge(runs["bare"]), _merge(runs["stock"])
    search, bare_search = _merge(runs["search"]), _merge(runs["bare-search"])
    print(f"   database: {durability}; gunicorn {GUNICORN_WORKERS} workers x {GUNICORN_THREADS} threads, "
          f"at most {WORKER_CONNECTIONS} connections each; "
          f"wrk {WRK_THREADS} threads, {CONNECTIONS} connections, {ROUNDS} rounds x {DURATION_SECONDS} s per variant; "
          "medians over rounds, ratios within a round", flush=True)  # fmt: skip
    for name in variants:
        spread = ", ".join(f"{r['rps']:.0f}" for r in runs[name])
        worst = _merge(runs[name])["p99_worst"]
        print(f"   {name}: per second, round by round: {spread}; worst round's p99 {worst:.1f} ms", flush=True)
    read_ratio, stock_ratio = _ratio(runs, "gated", "bare"), _ratio(runs, "gated", "stock")
    search_ratio = _ratio(runs, "search", "bare-search")
    return [
        Figure("api: gated read over HTTP (16 clients)", gated["rps"], "reads/s", ">= 1000", gated["rps"] >= 1000),
        Figure("api: gated read p50 latency", gated["p50"], "ms"),
        Figure("api: gated read p99 latency", gated["p99"], "ms", "<= 25", gated["p99"] <= 25),
        Figure("api: bare DRF read (same auth, same bytes)", bare["rps"], "reads/s"),
        Figure("api: bare DRF read p99 latency", bare["p99"], "ms"),
        Figure("api: stock DRF ModelSerializer read", stock["rps"], "reads/s"),
        Figure("api: stock DRF read p99 latency", stock["p99"], "ms"),
        Figure(
            "api: gated vs bare DRF read throughput ratio",
            read_ratio,
            "ratio",
            ">= 0.9",
            read_ratio >= 0.9,
        ),
        Figure(
            "api: gated vs stock DRF read throughput ratio",
            stock_ratio,
            "ratio",
            ">= 1.0",
            stock_ratio >= 1.0,
        ),
        Figure(
            "api: gated reads served with no committed log row",
            max(0.0, gated["requests"] - logged),
            "reads",
            "0",
            gated["requests"] <= logged,
        ),
        Figure(f"api: gated search of {SEARCH_SIZE} Observations", search["rps"], "searches/s"),
        Figure(f"api: gated search of {SEARCH_SIZE} p99 latency", search["p99"], "ms"),
        Figure(f"api: bare search of {SEARCH_SIZE} (same auth, same bytes)", bare_search["rps"], "searches/s"),
        Figure("api: gated vs bare search throughput ratio", search_ratio, "ratio", ">= 0.6", search_ratio >= 0.6),
        Figure(
            f"api: gated search of {SEARCH_SIZE} Observations with _include=Observation:encounter",
            _merge(runs["search-include"])["rps"],
            "searches/s",
        ),
        Figure(
            "api: search with _include vs without throughput ratio", _ratio(runs, "search-include", "search"), "ratio"
        ),
    ]
