"""Canonical bytes of an access-log entry, and reading sealed entries fast for hashing.

An entry's leaf is SHA-256(0x00 || canonical bytes), where the canonical bytes are the
orjson encoding (compact JSON, UTF-8) of this fixed-order array:

    [1, at, actor, patient_ref, action, purpose, grant_ref, resource_ids, query,
     outcome, job_id, reason, break_glass]

- `1` is the format version, so a later format can live beside this one;
- `at` is UTC text "YYYY-MM-DD HH:MM:SS.ffffff" (what SQLite stores, what PostgreSQL's
  to_char gives); `patient_ref` 32 lowercase hex digits or null; `break_glass` 0 or 1;
- `resource_ids` is a string: the list as Python's json.dumps writes it (", " between
  items, non-ASCII escaped). SQLite stores exactly that text and PostgreSQL's jsonb prints
  the same for ASCII content, so the hot loop hashes the stored text as it comes and
  only re-encodes the rare non-ASCII value.

The position (`seq`) and the row id are deliberately not in the bytes: the Merkle tree
binds each leaf to its index, and keeping the position out lets verification tell a
deleted or inserted entry (everything after it shifts by one) and a reordered one (the
leaf turns up elsewhere) from an edited one (the leaf matches nothing).

Sealing and verification read rows with the same raw SQL (`sealed_rows`: no model
instances, no field converters), so both compute identical bytes; the model-instance
path `entry_canonical_bytes` must agree, and a test checks that it does on both databases.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

import orjson
from django.db import connection
from django.utils.dateparse import parse_datetime

from audit.models import AccessLogEntry

CANONICAL_VERSION = 1
_AT_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_AT_LENGTH = 26
_TABLE = AccessLogEntry._meta.db_table

# A row from `sealed_rows`: the 13 canonical values, then seq and id.
CANONICAL_WIDTH = 13
SEQ = 13
ID = 14
_AT, _RIDS = 1, 7

_SELECT = {
    # The casts matter: Django registers sqlite3 converters for declared datetime and bool
    # columns; an expression has no declared type, so the stored text and 0/1 come back raw.
    "sqlite": (
        "1, CAST(at AS TEXT), actor, patient_ref, action, purpose, grant_ref, resource_ids, query, outcome, job_id,"
        " reason, CAST(break_glass AS INTEGER), seq, id"
    ),
    "postgresql": (
        "1, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), actor, replace(patient_ref::text, '-', ''),"
        " action, purpose, grant_ref, resource_ids::text, query, outcome, job_id, reason, break_glass::int, seq, id"
    ),
}

Row = tuple[Any, ...]


def _select() -> str:
    try:
        return _SELECT[connection.vendor]
    except KeyError as exc:  # pragma: no cover - settings only allow the two
        raise NotImplementedError(f"access-log hashing does not support {connection.vendor}") from exc


def _canonical_at(value: object) -> object:
    """Rows Django stored are canonical already; anything else is read the way Django would read it."""
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            return value  # unreadable: hash it as it is, so the edit is caught
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime(_AT_FORMAT)
    return value


def _canonical_resource_ids(value: object) -> object:
    if isinstance(value, str) and not value.isascii():
        try:
            return json.dumps(orjson.loads(value))
        except orjson.JSONDecodeError:
            return value
    return value


def row_leaf(row: Row) -> bytes:
    """The leaf hash of one row as `sealed_rows` returns it, normalising what the hot loop skips."""
    values = list(row[:CANONICAL_WIDTH])
    values[_AT] = _canonical_at(values[_AT])
    values[_RIDS] = _canonical_resource_ids(values[_RIDS])
    try:
        return sha256(b"\x00" + orjson.dumps(values)).digest()
    except TypeError:
        return b""  # a value JSON cannot carry (a blob in a text column): matches no leaf


def rows_leaves(rows: list[Row]) -> list[bytes]:
    """Leaf hashes of many rows: the verifier's hot loop, one slice, one encode and one hash per row."""
    dumps = orjson.dumps
    leaves: list[bytes] = []
    append = leaves.append
    for row in rows:
        at, rids = row[_AT], row[_RIDS]
        if at.__class__ is str and len(at) == _AT_LENGTH and rids.__class__ is str and rids.isascii():
            try:
                append(sha256(b"\x00" + dumps(row[:CANONICAL_WIDTH])).digest())
                continue
            except TypeError:
                pass
        append(row_leaf(row))
    return leaves


def entry_canonical_bytes(entry: AccessLogEntry) -> bytes:
    """Canonical bytes from a model instance (the portal's and the proof command's path)."""
    at = entry.at.astimezone(UTC) if entry.at.tzinfo is not None else entry.at
    return orjson.dumps(
        [
            CANONICAL_VERSION,
            at.strftime(_AT_FORMAT),
            entry.actor,
            entry.patient_ref.hex if entry.patient_ref is not None else None,
            entry.action,
            entry.purpose,
            entry.grant_ref,
            json.dumps(list(entry.resource_ids)),
            entry.query,
            entry.outcome,
            entry.job_id,
            entry.reason,
            1 if entry.break_glass else 0,
        ]
    )


def entry_leaf_hash(entry: AccessLogEntry) -> bytes:
    """RFC 6962 leaf hash of an entry as its model instance reads now."""
    return sha256(b"\x00" + entry_canonical_bytes(entry)).digest()


def sealed_rows(*, first_seq: int, last_seq: int) -> list[Row]:
    """Rows with first_seq <= seq <= last_seq in seq order, as raw tuples (canonical values..., seq, id)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_select()} FROM {_TABLE} WHERE seq >= %s AND seq <= %s ORDER BY seq",  # noqa: S608 - fixed names
            [first_seq, last_seq],
        )
        return cursor.fetchall()


def rows_outside(*, first_seq: int, last_seq: int, limit: int = 1) -> list[Row]:
    """Sealed rows whose seq lies outside [first_seq, last_seq]: no checkpoint covers them."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_select()} FROM {_TABLE} WHERE seq < %s OR seq > %s ORDER BY seq LIMIT %s",  # noqa: S608
            [first_seq, last_seq, limit],
        )
        return cursor.fetchall()
