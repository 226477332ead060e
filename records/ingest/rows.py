"""Writing rows in bulk: COPY for many, one INSERT ... SELECT FROM unnest(...) for a few, never model instances."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, models

from healthledger.lib.db import prepared_cursor
from records.models import Patient, Resource

QUERY_CHUNK = 900  # stays under every backend's bound-parameter limit


@dataclass(slots=True)
class _Row:
    """One version to write, as plain values (model instances cost more than the encryption)."""

    patient_id: uuid.UUID
    resource_type: str
    fhir_id: str
    version: int
    digest: bytes
    head: bytes
    ciphertext: bytes
    wrapped_data_key: bytes
    tokens: set[bytes]
    pk: int | None


def chunks(items: list[Any], size: int = QUERY_CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _resources_insert(rows: list[_Row], *, at: Any) -> None:
    """Insert the resource rows of new resources and learn their primary keys.

    A few rows (a diagnostic job's outputs, a single create) on PostgreSQL: one INSERT ... RETURNING.
    Otherwise COPY, then one select per chunk for the keys.
    """
    uuid_field = Patient._meta.pk
    assert uuid_field is not None
    patient_ids = {row.patient_id: uuid_field.get_db_prep_value(row.patient_id, connection) for row in rows}
    values = [
        (patient_ids[r.patient_id], r.resource_type, r.fhir_id, r.version, r.digest, r.head, r.ciphertext,
         r.wrapped_data_key, at)
        for r in rows
    ]  # fmt: skip
    fields = (
        "patient", "resource_type", "fhir_id", "current_version", "current_hash", "head_mac", "current_ciphertext",
        "current_wrapped_data_key", "updated_at",
    )  # fmt: skip
    by_identity = {(row.fhir_id, row.resource_type): row for row in rows}
    if _few(values):
        for pk, fhir_id, resource_type in _unnest_insert(
            Resource, fields, values, returning=("id", "fhir_id", "resource_type")
        ):
            by_identity[(fhir_id, resource_type)].pk = pk
        return
    _rows_insert(Resource, fields, values)
    for part in chunks([row.fhir_id for row in rows]):
        found = Resource.objects.filter(fhir_id__in=part).values_list("pk", "fhir_id", "resource_type")
        for pk, fhir_id, resource_type in found:
            row = by_identity.get((fhir_id, resource_type))
            if row is not None:
                row.pk = pk


def _column(field: object) -> str:
    assert isinstance(field, models.Field)
    return str(field.column)


def _internal_type(field: object) -> str:
    assert isinstance(field, models.Field)
    if isinstance(field, models.ForeignKey):
        return str(field.target_field.get_internal_type())
    return str(field.get_internal_type())


_PG_COPY_TYPES = {
    "BigAutoField": "int8",
    "PositiveIntegerField": "int4",
    "BinaryField": "bytea",
    "CharField": "text",
    "DateTimeField": "timestamptz",
    "UUIDField": "uuid",
}


# Up to this many rows, PostgreSQL gets one INSERT ... SELECT FROM unnest(...): one round trip, where COPY
# takes two (the COPY, then its data) and cannot return the keys. Past it, COPY's streaming wins.
FEW_ROWS = 64


def _few(rows: list[tuple[Any, ...]]) -> bool:
    return connection.vendor == "postgresql" and 0 < len(rows) <= FEW_ROWS


def _unnest_insert(
    model: type[models.Model], fields: tuple[str, ...], rows: list[tuple[Any, ...]], *, returning: tuple[str, ...] = ()
) -> list[tuple[Any, ...]]:
    """INSERT a few rows as one array per column (one fixed statement per table, prepared); the RETURNING rows."""
    meta = model._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(_column(meta.get_field(name))) for name in fields)
    arrays = ", ".join(f"%s::{_PG_COPY_TYPES[_internal_type(meta.get_field(name))]}[]" for name in fields)
    back = f" RETURNING {', '.join(quote(name) for name in returning)}" if returning else ""
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT * FROM unnest({arrays}){back}"  # noqa: S608 (model names)
    with prepared_cursor() as cursor:
        cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
        return list(cursor.fetchall()) if returning else []


def _rows_insert(model: type[models.Model], fields: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert many rows of plain values (bytes, ints, adapted datetimes) as cheaply as the backend allows.

    Ingest writes tens of thousands of version and token rows; building model
    instances for bulk_create costs more than the encryption. SQLite runs in
    process, so executemany of one prepared statement is cheapest there;
    PostgreSQL gets COPY, one stream for all rows (a few rows: _unnest_insert).
    """
    rows = list(rows)
    if not rows:
        return
    if _few(rows):
        _unnest_insert(model, fields, rows)
        return
    meta = model._meta
    columns = ", ".join(connection.ops.quote_name(_column(meta.get_field(name))) for name in fields)
    table = connection.ops.quote_name(meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Binary COPY: ciphertext goes over the wire as is, not hex-escaped.
            types = [_PG_COPY_TYPES[_internal_type(meta.get_field(name))] for name in fields]
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
            return
        placeholders = ", ".join(["%s"] * len(fields))
        sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608 (names come from the model)
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 5000:
                cursor.executemany(sql, batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
