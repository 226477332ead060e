"""A database connection the server dropped (PostgreSQL restarted, a backend terminated) is replaced at the
start of the next request or task, instead of failing that request with 503 once per thread and process.

Web threads and Celery pool processes keep their connection between requests (CONN_MAX_AGE); Django asks
`close_old_connections` at each request's start and end, Celery's Django fixup the same around each task.
With CONN_HEALTH_CHECKS a reused connection is pinged first and, when dead, replaced.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, connection, connections

from healthledger.lib.db import prepared_cursor

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


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[int]]:
    """A connection kept from an earlier request (its backend pid), and a count of Django's health-check pings
    (each a `SELECT 1` round trip) from here on; the pings are still sent."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    pings: list[int] = []
    wrapper = type(connections[DEFAULT_DB_ALIAS])
    ping = wrapper.is_usable

    def counted(self):  # type: ignore[no-untyped-def]
        pings.append(1)
        return ping(self)

    monkeypatch.setattr(wrapper, "is_usable", counted)
    close_old_connections()
    pid = _backend_pid()
    close_old_connections()  # the request ends: the connection is kept for the next one
    pings.clear()
    return pid, pings


def _backend_pid() -> int:
    with prepared_cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_a_requests_first_read_is_its_health_check_and_survives_a_dropped_connection(kept):  # type: ignore[no-untyped-def]
    first_pid, pings = kept
    second_pid = _backend_pid()  # a healthy kept connection: the read itself is the check, no ping
    assert (second_pid, pings) == (first_pid, [])
    close_old_connections()

    _terminate(first_pid)
    third_pid = _backend_pid()  # the read finds the connection dead, is sent again on a new one, and answers
    assert third_pid != first_pid
    assert pings == []
    with prepared_cursor() as cursor:  # the check is done for the rest of the request
        cursor.execute("SELECT 1")
    assert pings == []
    close_old_connections()


def test_a_first_statement_that_writes_is_never_sent_twice_it_waits_for_the_ping(kept):  # type: ignore[no-untyped-def]
    first_pid, pings = kept
    _terminate(first_pid)

    with prepared_cursor() as cursor:  # the ping finds the connection dead first: the write goes to a new one once
        cursor.execute("CREATE TEMPORARY TABLE written_once (n int)")
        cursor.execute("INSERT INTO written_once VALUES (1)")
        cursor.execute("SELECT count(*) FROM written_once")
        assert cursor.fetchone()[0] == 1
    assert pings == [1]
    assert _backend_pid() != first_pid
    close_old_connections()


def test_a_failing_read_on_a_live_connection_is_not_sent_again(kept):  # type: ignore[no-untyped-def]
    pid, pings = kept
    with pytest.raises(DatabaseError), prepared_cursor() as cursor:
        cursor.execute("SELECT 1 / 0")
    assert pings == []
    close_old_connections()
    assert _backend_pid() == pid  # the same connection: nothing was replaced for a statement's own error


def test_a_with_query_declared_a_read_is_the_health_check_and_an_undeclared_one_waits_for_the_ping(kept):  # type: ignore[no-untyped-def]
    first_pid, pings = kept
    _terminate(first_pid)
    with prepared_cursor(reads=True) as cursor:  # a search's record-and-page statement: sent again on a new connection
        cursor.execute("WITH t AS (SELECT pg_backend_pid() AS pid) SELECT pid FROM t")
        second_pid = int(cursor.fetchone()[0])
    assert second_pid != first_pid
    assert pings == []
    close_old_connections()

    with prepared_cursor() as cursor:  # not said to read: a WITH may write, so Django's ping goes first
        cursor.execute("WITH t AS (SELECT pg_backend_pid() AS pid) SELECT pid FROM t")
        assert int(cursor.fetchone()[0]) == second_pid
    assert pings == [1]
    close_old_connections()
