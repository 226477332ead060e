"""Prepared statements for the few fixed SQL statements every API request runs.

Django binds parameters on the client, so PostgreSQL parses and plans every statement
afresh; for the token lookup, the read's locate-and-grants statement and the access-log
insert that costs more than executing them. A cursor from `prepared_cursor` binds on the
server instead, and psycopg prepares a statement once per connection after it has run
`prepare_threshold` times (settings: DATABASE_PREPARED_STATEMENTS). It is still Django's
cursor wrapper on Django's connection: same transaction, same error translation, same
query logging. On SQLite it is a plain cursor.

A kept connection is checked before a request reuses it (CONN_HEALTH_CHECKS): Django pings it
with `SELECT 1`, one round trip of its own. When a request's first statement comes through here
and only reads, that statement is the check instead: should the connection turn out dead (the
server restarted), it is replaced and the read sent again, exactly once. A statement that
writes, or one inside a transaction, is never sent twice: Django's ping comes first, as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper


@contextmanager
def prepared_cursor(*, binary: bool = False, reads: bool = False) -> Iterator[CursorWrapper]:
    """A server-binding cursor; `binary`: rows in PostgreSQL's binary format, for statements that return bytea
    (as text each byte would travel as two hex digits, encoded by the server and decoded here). `reads`: the
    statement only reads though it does not begin with SELECT (a WITH query of SELECTs), so it may stand in
    for the health check as a SELECT does."""
    # One lookup of this thread's connection: each `django.db.connection.x` is a context-local lookup.
    # Any: django-stubs do not declare the wrapper's health-check attributes (health_check_enabled, _done).
    db: Any = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            yield cursor
        return
    # What connection.cursor() does, with a server-binding cursor in place of the client-binding one; the
    # health check is left to the first statement when that can stand in for it (_CheckingCursor).
    check_pending = db.connection is not None and db.health_check_enabled and not db.health_check_done
    if check_pending and db.in_atomic_block:
        db.close_if_health_check_failed()
        check_pending = False
    db.ensure_connection()
    cursor = _server_binding_cursor(db, binary)
    if not check_pending:
        with cursor:
            yield cursor
        return
    checking = _CheckingCursor(db, cursor, binary, reads)
    try:
        yield checking  # type: ignore[misc]
    finally:
        checking.close()


def _server_binding_cursor(db: BaseDatabaseWrapper, binary: bool) -> CursorWrapper:
    cursor_class, binary_format = _server_binding()
    with db.wrap_database_errors:
        server_binding = cursor_class(db.connection)
        if binary:
            server_binding.format = binary_format
        return db._prepare_cursor(server_binding)  # type: ignore[attr-defined,no-any-return]


@cache
def _server_binding() -> tuple[Any, Any]:
    """The PostgreSQL backend's server-binding cursor class and psycopg's binary format: imported on first use
    (a SQLite deployment loads neither), then kept, not imported again for every statement."""
    from django.db.backends.postgresql.base import ServerBindingCursor
    from psycopg.pq import Format

    return ServerBindingCursor, Format.BINARY


class _CheckingCursor:
    """A cursor whose first statement is also the connection's health check.

    A first statement that reads (SELECT) and fails because the connection is gone is sent again on a
    new connection; anything else gets Django's ping before it is sent. Either way the check is done
    for the rest of the request once the first statement has an answer.
    """

    def __init__(self, db: Any, cursor: CursorWrapper, binary: bool, reads: bool = False) -> None:
        self._db, self._cursor, self._binary, self._reads = db, cursor, binary, reads

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        if self._db.health_check_done:
            return self._cursor.execute(sql, params)
        if not self._reads and sql.lstrip()[:6].upper() != "SELECT":
            self._replace_if(not self._db.is_usable())
            self._db.health_check_done = True
            return self._cursor.execute(sql, params)
        try:
            result = self._cursor.execute(sql, params)
        except OperationalError:
            if self._db.connection is not None and not self._db.connection.broken:
                raise  # the statement failed, not the connection
            self._replace_if(True)
            result = self._cursor.execute(sql, params)
        self._db.health_check_done = True
        return result

    def _replace_if(self, dead: bool) -> None:
        if not dead:
            return
        self._cursor.close()
        self._db.close()
        self._db.ensure_connection()
        self._cursor = _server_binding_cursor(self._db, self._binary)

    def close(self) -> None:
        self._cursor.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)
