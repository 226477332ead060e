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

from django.db import connection

from healthledger.lib.db import prepared_cursor
from records.models import Patient, Resource, ResourceVersion
from records.selectors.located import _LOCATED_FIELDS, RowExtra, patient_locate_by_fhir_id
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


def _sql(extras: tuple[str, ...]) -> str:
    sql = _SQL.get(extras)
    if sql is None:
        quote = connection.ops.quote_name
        record, resource, version = (quote(m._meta.db_table) for m in (Patient, Resource, ResourceVersion))
        named = "".join(f", {extra} AS e{k}" for k, extra in enumerate(extras))
        values = "".join(f", t.e{k}" for k in range(len(extras)))
        guard = f"t.e{len(extras) - 1}"
        # Two row shapes in one answer: the record's row (its id set) and the page's rows (their own columns).
        sql = _SQL[extras] = (
            f"WITH t AS (SELECT p.id, p.user_id, p.wrapped_key, p.master_key_id{named} FROM {record} p"  # noqa: S608
            " WHERE p.fhir_id = %s AND p.fhir_id <> '')"
            f" SELECT NULL::bigint, t.id, t.user_id, t.wrapped_key, t.master_key_id{values},"
            f" CASE WHEN {guard} IS NOT NULL THEN"
            f" (SELECT COUNT(*) FROM {resource} c WHERE c.patient_id = t.id AND c.resource_type = %s) END,"
            " NULL, NULL, NULL, NULL, NULL, NULL FROM t"
            f" UNION ALL SELECT r.id, NULL, NULL, NULL, NULL{', NULL' * len(extras)}, NULL,"
            " r.fhir_id, v.version, v.ciphertext, v.wrapped_data_key, r.current_version, r.head_mac"
            " FROM t CROSS JOIN LATERAL (SELECT id, fhir_id, current_version, head_mac"
            f" FROM {resource} WHERE patient_id = t.id AND resource_type = %s ORDER BY id LIMIT %s OFFSET %s) r"
            f" JOIN {version} v ON v.resource_id = r.id AND v.version = r.current_version WHERE {guard} IS NOT NULL"
        )
    return sql


def patient_locate_with_type_page(
    *, fhir_id: str, extras: Sequence[RowExtra], resource_type: str, limit: int, offset: int
) -> tuple[Patient, tuple[object, ...], TypePage | None] | None:
    """patient_locate_by_fhir_id, and stored_page_of_type (limit > 0) of the record it finds, in one statement.

    The page (None without it) is read only when the last of `extras` is not NULL. PostgreSQL; elsewhere
    the record alone, and the page is left to stored_page_of_type.
    """
    if connection.vendor != "postgresql" or not extras or limit <= 0:
        found = patient_locate_by_fhir_id(fhir_id=fhir_id, extras=extras)
        return None if found is None else (*found, None)
    params: list[Any] = [param for extra in extras for param in extra.params]
    params += [fhir_id, resource_type, resource_type, limit, offset]
    with prepared_cursor(binary=True) as cursor:
        cursor.execute(_sql(tuple(extra.sql for extra in extras)), params)
        rows = cursor.fetchall()
    target = next((row for row in rows if row[1] is not None), None)
    if target is None:
        return None
    pk = target[1] if isinstance(target[1], uuid.UUID) else uuid.UUID(str(target[1]))
    wrapped = bytes(target[3]) if target[3] is not None else None
    patient = Patient.from_db(connection.alias, _LOCATED_FIELDS, [pk, target[2], fhir_id, wrapped, target[4]])
    count_at = 5 + len(extras)
    values, count = tuple(target[5:count_at]), target[count_at]
    if count is None:  # no live grant: no page was read
        return patient, values, None
    # In resource order (a UNION ALL promises none), each row only what is its own (stored_page_of_type's rows).
    own = itemgetter(*range(count_at + 1, count_at + 7))
    new, shape, key_id = tuple.__new__, StoredVersion, target[4]
    stored = [
        new(shape, (pk, resource_type, fhir_id_, number, sealed, wrapped_data_key, wrapped, key_id, current, head))
        for fhir_id_, number, sealed, wrapped_data_key, current, head in (
            own(row) for row in sorted((row for row in rows if row[1] is None), key=itemgetter(0))
        )
    ]
    return patient, values, TypePage(resource_type, limit, offset, stored, int(count))
