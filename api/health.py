"""`/healthz`: whether each service this process depends on answers, for operators and `make run`."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "up"


def _broker() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return "up"


def _chain() -> str:
    if not settings.CHAIN_RPC_URL:
        return "not configured"
    from ledger.client import chain_health  # imported late: the chain seam is optional at this stage

    return chain_health()


def _backlog() -> dict[str, object]:
    """What is accepted and not done yet: jobs owed to the broker or overdue, chain writes not yet confirmed.

    Database reads only, so a down broker or chain never slows /healthz (`manage.py system_status` also asks
    them: jobs without a broker message, the relayer's nonce against the chain's).
    """
    from diagnostics.dispatch import job_dispatch_status
    from ledger.selectors import outbox_status

    try:
        return {"jobs": job_dispatch_status(), "chain_outbox": outbox_status(ask_chain=False)}
    except Exception as exc:  # reported, never fatal: the probe's answer is the services above
        return {"error": type(exc).__name__}


CHECKS: dict[str, Callable[[], str]] = {"database": _database, "broker": _broker, "chain": _chain}
REQUIRED = ("database", "broker")


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report: dict[str, object] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            state = check()
        except Exception as exc:  # a health check reports any failure as "down", with its type only
            state = f"down ({type(exc).__name__})"
        report[name] = {"status": state, "ms": round((time.perf_counter() - started) * 1000, 1)}
    healthy = all(str(report[name]["status"]) == "up" for name in REQUIRED)  # type: ignore[index]
    body: dict[str, object] = {"status": "ok" if healthy else "degraded", "services": report}
    if report["database"]["status"] == "up":  # type: ignore[index]
        body["backlog"] = _backlog()
    response = JsonResponse(body, status=200 if healthy else 503)
    if not healthy:
        response["Retry-After"] = "5"
    return response
