"""Prepared statements for the few fixed SQL statements every API request runs.

Django binds parameters on the client, so PostgreSQL parses and plans every statement
afresh; for the token lookup, the read's locate-and-grants statement and the access-log
insert that costs more than executing them. A cursor from `prepared_cursor` binds on the
server instead, and psycopg prepares a statement once per connection after it has run
`prepare_threshold` times (settings: DATABASE_PREPARED_STATEMENTS). It is still Django's
cursor wrapper on Django's connection: same transaction, same error translation, same
query logging. On SQLite it is a plain cursor.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.utils import CursorWrapper


@contextmanager
def prepared_cursor(*, binary: bool = False) -> Iterator[CursorWrapper]:
    """A server-binding cursor; `binary`: rows in PostgreSQL's binary format, for statements that return bytea
    (as text each byte would travel as two hex digits, encoded by the server and decoded here)."""
    # One lookup of this thread's connection: each `django.db.connection.x` is a context-local lookup.
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            yield cursor
        return
    from django.db.backends.postgresql.base import ServerBindingCursor
    from psycopg.pq import Format

    # What connection.cursor() does, with a server-binding cursor in place of the client-binding one.
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        server_binding = ServerBindingCursor(db.connection)  # type: ignore[call-arg]
        if binary:
            server_binding.format = Format.BINARY  # type: ignore[attr-defined]
        cursor = db._prepare_cursor(server_binding)  # type: ignore[attr-defined]
    with cursor:
        yield cursor
