"""What every scenario must leave behind, checked the same way after each one, and the canary search.

After a scenario: the access log is sealed and `verify_access_log` passes (database, maximum merge delay,
anchors on chain); `chain_reconcile` (what `reconcile_chain` runs) finds zero differences; every accepted
job is in a final state, a succeeded one with exactly one result and one release entry, any other with none.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AccessLogEntry
from audit.services import access_log_seal
from consent.reconcile import chain_reconcile
from diagnostics.models import TERMINAL_STATUSES, DiagnosticJob, JobResult, JobStatus
from healthledger.errors import ChainError, ChainUnavailable


def after_scenario(*, tampered: bool = False) -> dict[str, Any]:
    """The shared check; `ok` is True only when every part of it passed. After a scenario that forged the log
    on purpose (`tampered`), the access-log part passes only when verify_access_log fails: it caught it."""
    access_log_seal()  # what beat does every few seconds: the scenario's entries are verified too
    out = io.StringIO()
    try:
        call_command("verify_access_log", "--jobs", "1", stdout=out, stderr=out)
        access_log = "ok"
    except CommandError as exc:
        access_log = f"FAILED ({exc.returncode}): {exc}"[:300]
    try:
        report = chain_reconcile()
        differences: int | str = len(report.differences)
    except (ChainUnavailable, ChainError) as exc:
        differences = f"chain unreachable: {type(exc).__name__}"
    jobs = list(DiagnosticJob.objects.values_list("id", "status"))
    results = Counter(str(job_id) for job_id in JobResult.objects.values_list("job_id", flat=True))
    releases = Counter(
        str(job_id)
        for job_id in AccessLogEntry.objects.filter(action="diagnostics.result.release").values_list(
            "job_id", flat=True
        )
    )
    unfinished = sum(1 for _, status in jobs if status not in TERMINAL_STATUSES)
    wrong_results = sum(
        1
        for job_id, status in jobs
        if status in TERMINAL_STATUSES
        and (
            (results[str(job_id)], releases[str(job_id)]) != (1, 1)
            if status == JobStatus.SUCCEEDED
            else results[str(job_id)] != 0
        )
    )
    checks: dict[str, Any] = {
        "verify_access_log": access_log,
        "reconcile_differences": differences,
        "jobs": len(jobs),
        "jobs_unfinished": unfinished,
        "jobs_without_exactly_one_result": wrong_results,
    }
    if tampered:
        access_log = "caught: " + access_log if access_log != "ok" else "NOT CAUGHT: verify_access_log passed"
        checks["verify_access_log"] = access_log
    log_ok = access_log.startswith("caught: ") if tampered else access_log == "ok"
    checks["ok"] = log_ok and differences == 0 and unfinished == 0 and wrong_results == 0
    return checks


# --- Canaries ----------------------------------------------------------------------------


def redis_hits(canary: bytes, redis_url: str) -> int:
    """Every key and every value in the Redis (SCAN, all types): task arguments, results, anything."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    hits = 0
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        if kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [*client.hgetall(key).keys(), *client.hgetall(key).values()]
        elif kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = list(client.zrange(key, 0, -1))
        elif kind == b"stream":
            values = [repr(client.xrange(key)).encode()]
        else:
            values = []
        hits += sum(canary in (value or b"") for value in [key, *values])
    return hits


def file_hits(canary: bytes, paths: list[Path]) -> int:
    """Logs: every file given (directories searched whole)."""
    hits = 0
    for path in paths:
        for file in [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file()):
            hits += file.read_bytes().count(canary)
    return hits


def chain_hits(canary: bytes, rpc_url: str) -> int:
    """Every transaction's input and every event log on the chain, raw and hex-encoded."""
    needles = [canary.hex(), canary.decode(errors="replace")]

    def rpc(method: str, *params: object) -> Any:
        answer = requests.post(
            rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10
        )
        return answer.json()["result"]

    head = int(rpc("eth_blockNumber"), 16)
    text = []
    for number in range(head + 1):
        block = rpc("eth_getBlockByNumber", hex(number), True)
        text += [tx.get("input", "") for tx in block["transactions"]]
    text += [repr(log) for log in rpc("eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest"})]
    return sum(needle in chunk for chunk in text for needle in needles)


def rows_hits(canary: bytes) -> int:
    """Values the database keeps in the clear about jobs: reasons (the record itself is encrypted)."""
    reasons = DiagnosticJob.objects.values_list("status_reason", flat=True)
    return sum(canary.decode() in reason for reason in reasons)
