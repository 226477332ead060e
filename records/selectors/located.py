"""Finding a row by type and id alone, before the patient is known: the API's read path.

`extras` add expressions about the caller, or about the row's patient, to that same statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_datetime

from healthledger.lib.db import prepared_cursor
from records.models import Patient, Resource, ResourceVersion
from records.selectors.stored import StoredVersion, _stored


@dataclass(frozen=True)
class RowExtra:
    """A scalar SQL expression evaluated with a located row, and its parameters.

    Lets a layer above this one fetch what it needs with the row in the same round trip: the
    caller's identity, or its grants on the row's patient (the expression may refer to the
    row's patient as `p`, the Patient table). It must be a constant string per caller (the
    statement is prepared and cached by its text).
    """

    sql: str
    params: Sequence[object] = ()


@dataclass(frozen=True)
class LocatedVersion:
    """A stored version found by type and id alone, with its owner and the version's time."""

    stored: StoredVersion
    patient_user_id: int | None
    created_at: datetime
    # The values of the RowExtra expressions asked for, in order, as the driver returns them.
    extras: tuple[object, ...] = ()


_LOCATE_SQL: dict[tuple[str, bool, tuple[str, ...]], str] = {}


def _locate_sql(pinned: bool, extras: tuple[str, ...]) -> str:
    key = (connection.vendor, pinned, extras)
    sql = _LOCATE_SQL.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        version, resource, patient = (quote(m._meta.db_table) for m in (ResourceVersion, Resource, Patient))
        wanted = "%s" if pinned else "r.current_version"
        more = "".join(f", {extra}" for extra in extras)
        sql = _LOCATE_SQL[key] = (
            "SELECT r.patient_id, p.user_id, r.resource_type, r.fhir_id, v.version, v.ciphertext,"  # noqa: S608
            f" v.wrapped_data_key, p.wrapped_key, p.master_key_id, r.current_version, r.head_mac, v.created_at{more}"
            f" FROM {version} v JOIN {resource} r ON r.id = v.resource_id JOIN {patient} p ON p.id = r.patient_id"
            f" WHERE r.fhir_id = %s AND r.resource_type = %s AND v.version = {wanted}"
        )
    return sql


def stored_version_locate(
    *, resource_type: str, resource_id: str, version: int | None = None, extras: Sequence[RowExtra] = ()
) -> LocatedVersion | None:
    """The current (or given) version of Type/id, whoever's it is, with its owner and keys, in one query.

    The API's read path: the patient is not known until the row is found, and finding it,
    its owner and its sealed bytes in one round trip is what keeps a gated read cheap.
    `extras` add expressions (about the caller, about the row's patient) to that same statement.
    """
    params: list[Any] = [param for extra in extras for param in extra.params]
    params += [resource_id, resource_type] + ([version] if version is not None else [])
    with prepared_cursor() as cursor:
        cursor.execute(_locate_sql(version is not None, tuple(extra.sql for extra in extras)), params)
        row = cursor.fetchone()
    if row is None:
        return None
    (
        patient_id,
        user_id,
        rtype,
        fhir_id,
        number,
        ciphertext,
        wrapped_data_key,
        wrapped_key,
        key_id,
        current,
        head,
        at,
    ) = row[:12]
    if isinstance(at, str):  # SQLite hands raw cursors text
        at = parse_datetime(at)
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    stored = _stored(
        (patient_id, rtype, fhir_id, number, ciphertext, wrapped_data_key, wrapped_key, key_id, current, head)
    )
    return LocatedVersion(stored=stored, patient_user_id=user_id, created_at=at, extras=tuple(row[12:]))


_PATIENT_LOCATE_SQL: dict[tuple[str, tuple[str, ...]], str] = {}


def patient_locate_by_fhir_id(
    *, fhir_id: str, extras: Sequence[RowExtra] = ()
) -> tuple[Patient, tuple[object, ...]] | None:
    """The record whose Patient has this server id, with `extras` (about it, as `p`) from the same statement.

    The Patient comes with its wrapped key (None once erased), read in the same snapshot as the extras:
    a search's page is then read without joining the record's row again (stored_page_of_type).
    """
    key = (connection.vendor, tuple(extra.sql for extra in extras))
    sql = _PATIENT_LOCATE_SQL.get(key)
    if sql is None:
        table = connection.ops.quote_name(Patient._meta.db_table)
        more = "".join(f", {extra.sql}" for extra in extras)
        # The `<> ''` lets a prepared (generic) plan use the partial unique index on fhir_id.
        sql = _PATIENT_LOCATE_SQL[key] = (
            f"SELECT p.id, p.user_id, p.wrapped_key, p.master_key_id{more}"  # noqa: S608
            f" FROM {table} p WHERE p.fhir_id = %s AND p.fhir_id <> ''"
        )
    with prepared_cursor() as cursor:
        params: list[Any] = [param for extra in extras for param in extra.params]
        cursor.execute(sql, [*params, fhir_id])
        row = cursor.fetchone()
    if row is None:
        return None
    pk = row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0]))
    wrapped = bytes(row[2]) if row[2] is not None else None
    patient = Patient.from_db(connection.alias, _LOCATED_FIELDS, [pk, row[1], fhir_id, wrapped, row[3]])
    return patient, tuple(row[4:])


# What a located Patient carries: enough for a search to read and open a page without asking for the record again.
_LOCATED_FIELDS = ["id", "user_id", "fhir_id", "wrapped_key", "master_key_id"]
