"""What the real-process tests share: the services they need, a fresh anvil, and a worker's environment.

A worker process must see what the test sees: the PostgreSQL test database, the test's key
files, the same Redis and the same chain. SQLite's in-memory test database cannot be shared
with another process, so these tests skip there, and fail under CI where they must run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection

from ledger.client import chain_client, chain_client_reset
from ledger.devnode import ANVIL_BINARY, anvil_running
from ledger.services import deployment_create

REPO = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")


def require_services() -> None:
    missing = []
    if connection.vendor != "postgresql":
        missing.append("PostgreSQL (a worker process cannot share SQLite's in-memory test database)")
    try:
        redis.Redis.from_url(django_settings.REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        missing.append(f"Redis at {django_settings.REDIS_URL}")
    if not ANVIL_BINARY.exists():
        missing.append("anvil (npm install)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("CI must run this test, but these are missing: " + "; ".join(missing))
        pytest.skip("needs " + "; ".join(missing))


@pytest.fixture
def anvil(settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A throwaway anvil with ConsentRegistry deployed and recorded; this process's chain client points at it."""
    require_services()
    with anvil_running() as url:
        settings.CHAIN_BACKEND = "rpc"
        settings.CHAIN_RPC_URL = url
        chain_client_reset()
        deployment_create(client=chain_client())
        yield url
    chain_client_reset()


def worker_env(*, settings: Any, rpc_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker process that shares this test's database, keys, Redis and chain."""
    db = connection.settings_dict
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{host}:{port}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CHAIN_RPC_URL": rpc_url,
        "CHAIN_BACKEND": "rpc",
        "HEALTHLEDGER_KEYS_DIR": str(settings.KEYS_DIR),
        "HEALTHLEDGER_VAR_DIR": str(var_dir),
        **extra,
    }
    for name in ("HEALTHLEDGER_MASTER_KEY", "HEALTHLEDGER_INDEX_KEY", "HEALTHLEDGER_AUDIT_KEY"):
        env.pop(name, None)
    return env
