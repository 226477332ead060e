"""A database connection the server dropped (PostgreSQL restarted, a backend terminated) is replaced at the
start of the next request or task, instead of failing that request with 503 once per thread and process.

Web threads and Celery pool processes keep their connection between requests (CONN_MAX_AGE); Django asks
`close_old_connections` at each request's start and end, Celery's Django fixup the same around each task.
With CONN_HEALTH_CHECKS a reused connection is pinged first and, when dead, replaced.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import close_old_connections, connection

pytestmark = pytest.mark.django_db(transaction=True)


def _terminate(pid: int) -> None:
    """What a server restart does to every connection: the backend goes away under the client."""
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k not in ("cursor_factory", "context")}) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_settings_check_reused_connections():  # type: ignore[no-untyped-def]
    from django.conf import settings

    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] > 0


def test_next_request_after_the_server_dropped_the_connection_reconnects():  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    close_old_connections()  # a request starts
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        first_pid = cursor.fetchone()[0]
    close_old_connections()  # it ends: the connection is kept (CONN_MAX_AGE)
    _terminate(first_pid)

    close_old_connections()  # the next request starts on the same thread
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        second_pid = cursor.fetchone()[0]
    close_old_connections()
    assert second_pid != first_pid
