"""A search's record and the first page it would read, in one statement: a whole type of one patient's record.

The commonest search (`Observation?patient=X&_count=100`) used to cost two round trips before its
log entry: one finding the record with the caller's identity and grants on it (`extras`), one
reading the page. Here both come back from one prepared statement, the page only when the last
extra (the caller's live grants on the record) is not NULL: a caller holding none reads no page,
so searching a record they may not see costs what searching no record costs. What is read is
ciphertext; the consent gate decides on the grants before anything of it is opened, and drops the
page unread when the search turns out to ask for another (TypePage names what it is).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections

from healthledger.lib.db import prepared_cursor
from records.models import Patient, Resource
from records.selectors.located import _LOCATED_FIELDS, RowExtra, patient_locate_by_fhir_id
from records.selectors.pages import TYPE_PAGE_COLUMNS, type_page_from, type_page_stored
from records.selectors.stored import StoredVersion


@dataclass(frozen=True)
class TypePage:
    """stored_page_of_type's answer for (resource_type, limit, offset), read with the record."""

    resource_type: str
    limit: int
    offset: int
    stored: list[StoredVersion]
    total: int


_SQL: dict[tuple[str, ...], str] = {}
_ID = 7  # where the record's own columns begin in each row (the page's seven come first)


def _sql(extras: tuple[str, ...]) -> str:
    sql = _SQL.get(extras)
    if sql is None:
        quote = connection.ops.quote_name
        record, resource = (quote(m._meta.db_table) for m in (Patient, Resource))
        named = "".join(f", {extra} AS e{k}" for k, extra in enumerate(extras))
        values = "".join(f", t.e{k}" for k in range(len(extras)))
        guard = f"t.e{len(extras) - 1}"
        # Two row shapes in one answer: the page's rows (stored_page_of_type's, first) and the record's row.
        sql = _SQL[extras] = (
            f"WITH t AS (SELECT p.id, p.user_id, p.wrapped_key, p.master_key_id{named} FROM {record} p"  # noqa: S608
            " WHERE p.fhir_id = %s AND p.fhir_id <> '')"
            f" SELECT {TYPE_PAGE_COLUMNS}, NULL::uuid, NULL, NULL, NULL{', NULL' * len(extras)}, NULL::bigint"
            f"{type_page_from('t.id', lateral_to='t')} WHERE {guard} IS NOT NULL"
            " UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
            f" t.id, t.user_id, t.wrapped_key, t.master_key_id{values}, CASE WHEN {guard} IS NOT NULL THEN"
            f" (SELECT COUNT(*) FROM {resource} c WHERE c.patient_id = t.id AND c.resource_type = %s) END FROM t"
        )
    return sql


def patient_locate_with_type_page(
    *, fhir_id: str, extras: Sequence[RowExtra], resource_type: str, limit: int, offset: int
) -> tuple[Patient, tuple[object, ...], TypePage | None] | None:
    """patient_locate_by_fhir_id, and stored_page_of_type (limit > 0) of the record it finds, in one statement.

    The page (None without it) is read only when the last of `extras` is not NULL. PostgreSQL; elsewhere
    the record alone, and the page is left to stored_page_of_type.
    """
    db = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` is a lookup of this thread's connection
    if db.vendor != "postgresql" or not extras or limit <= 0:
        found = patient_locate_by_fhir_id(fhir_id=fhir_id, extras=extras)
        return None if found is None else (*found, None)
    params: list[Any] = [param for extra in extras for param in extra.params]
    params += [fhir_id, resource_type, limit, offset, resource_type]
    with prepared_cursor(binary=True, reads=True) as cursor:  # a WITH query that only reads
        cursor.execute(_sql(tuple(extra.sql for extra in extras)), params)
        rows = cursor.fetchall()
    # The record's row is the last as PostgreSQL appends the UNION ALL's branches; looked for anywhere otherwise.
    if rows and rows[-1][_ID] is not None:
        target, page = rows[-1], rows[:-1]
    else:
        target = next((row for row in rows if row[_ID] is not None), None)
        page = [row for row in rows if row[_ID] is None]
    if target is None:
        return None
    pk = target[_ID] if isinstance(target[_ID], uuid.UUID) else uuid.UUID(str(target[_ID]))
    user_id, wrapped, key_id = target[_ID + 1], target[_ID + 2], target[_ID + 3]
    wrapped = bytes(wrapped) if wrapped is not None else None
    patient = Patient.from_db(db.alias, _LOCATED_FIELDS, [pk, user_id, fhir_id, wrapped, key_id])
    values, count = tuple(target[_ID + 4 : -1]), target[-1]
    if count is None:  # no live grant: no page was read
        return patient, values, None
    page.sort(key=itemgetter(0))  # in resource order (nothing in the statement promises one), as stored_page_of_type's
    stored = type_page_stored(page, patient_id=pk, resource_type=resource_type, wrapped_key=wrapped, key_id=key_id)
    return patient, values, TypePage(resource_type, limit, offset, stored, int(count))
