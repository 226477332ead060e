"""One page of a search as sealed current versions, with the count of all matches, in as few statements as it takes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from healthledger.lib.db import prepared_cursor
from records.models import Patient, Resource, ResourceVersion
from records.selectors.search import resource_search
from records.selectors.stored import _PATIENT_PK, StoredVersion, _stored, stored_versions_by_ids


def stored_page(*, matching: QuerySet[Resource], limit: int, offset: int) -> tuple[list[StoredVersion], int]:
    """One page of `matching` in storage order as sealed current versions, and how many match in all.

    One statement: the total is a scalar count over the matches beside the page, so the wide rows
    (each carries its ciphertext) are only the page's; prepared on PostgreSQL, like the read's, so
    a search is not planned afresh each time. Only a page past the end (no row to carry the count)
    costs a second query, for the count alone.
    """
    matches, params = matching.values("pk").query.sql_with_params()
    with prepared_cursor(binary=True) as cursor:
        cursor.execute(_page_sql(matches), [*params, *params, limit, offset])
        rows = cursor.fetchall()
    if not rows:
        return [], (matching.count() if offset else 0)
    return [_stored(row[1:]) for row in rows], int(rows[0][0])


def _page_sql(matches: str) -> str:
    quote = connection.ops.quote_name
    version, resource, patient = (quote(m._meta.db_table) for m in (ResourceVersion, Resource, Patient))
    # The page's ids are chosen first (`matches` names each resource once, as `pk`), and only those rows are
    # read whole: reading every match and then sorting the wide rows read each match's ciphertext.
    return (
        f"SELECT (SELECT COUNT(*) FROM ({matches}) m), r.patient_id, r.resource_type, r.fhir_id,"  # noqa: S608
        f" r.current_version, {current_sealed(version)}, p.wrapped_key, p.master_key_id, r.current_version, r.head_mac"
        f" FROM (SELECT m.pk FROM ({matches}) m ORDER BY m.pk LIMIT %s OFFSET %s) page"
        f" JOIN {resource} r ON r.id = page.pk"
        f" JOIN {patient} p ON p.id = r.patient_id ORDER BY r.id"
    )


def current_sealed(version: str) -> str:
    """The current version's ciphertext and wrapped data key of resource row `r`, as two columns (`sealed`,
    `wrapped`): the copy the row carries (records.models.Resource.current_ciphertext), or, for a row written
    before it had one, its version row's (`version`: that table's quoted name), looked up only then."""
    row = f"FROM {version} v WHERE v.resource_id = r.id AND v.version = r.current_version"
    return (
        f"COALESCE(r.current_ciphertext, (SELECT v.ciphertext {row})) AS sealed,"
        f" CASE WHEN r.current_ciphertext IS NULL THEN (SELECT v.wrapped_data_key {row})"
        " ELSE r.current_wrapped_data_key END AS wrapped"
    )


_TYPE_PAGE_SQL: dict[str, str] = {}
_RECORD_KEY_FIELDS = ("wrapped_key", "master_key_id")
# A type page's rows, each only what differs between rows (its resource row's id first, for their order):
# what stored_page_of_type and a search's first statement (records.selectors.target_page) both read.
TYPE_PAGE_COLUMNS = "r.id, r.fhir_id, r.current_version, r.sealed, r.wrapped, r.current_version, r.head_mac"


def type_page_from(patient: str, *, lateral_to: str = "") -> str:
    """The FROM of a type page of the record `patient` names (an SQL expression); its parameters are the type, the
    limit and the offset. `lateral_to`: a FROM item `patient` refers to, which the page is joined to laterally."""
    quote = connection.ops.quote_name
    version, resource = (quote(m._meta.db_table) for m in (ResourceVersion, Resource))
    # The page's resource rows are chosen and carried in one pass (not chosen by id and looked up again), each
    # with its current version's ciphertext: no join to the versions (current_sealed).
    joined = f"{lateral_to} CROSS JOIN LATERAL " if lateral_to else ""
    return (
        f" FROM {joined}(SELECT id, fhir_id, current_version, head_mac, {current_sealed(version)} FROM {resource} r"  # noqa: S608
        f" WHERE patient_id = {patient} AND resource_type = %s ORDER BY id LIMIT %s OFFSET %s) r"
    )


def type_page_stored(
    rows: Sequence[Sequence[Any]], *, patient_id: uuid.UUID, resource_type: str, wrapped_key: bytes | None, key_id: str
) -> list[StoredVersion]:
    """StoredVersions of a type page's rows (TYPE_PAGE_COLUMNS first in each), with the record's key given once."""
    if rows and type(rows[0][3]) is bytes:  # psycopg's binary rows: taken as they are
        # tuple.__new__ with the fields in order: what StoredVersion(...) does, less its Python-level __new__.
        new, shape = tuple.__new__, StoredVersion
        return [
            new(shape, (patient_id, resource_type, row[1], row[2], row[3], row[4], wrapped_key, key_id, row[5], row[6]))
            for row in rows
        ]
    # SQLite hands memoryviews and the like: _stored converts
    return [_stored((patient_id, resource_type, *row[1:5], wrapped_key, key_id, *row[5:7])) for row in rows]


def stored_page_of_type(
    *, patient: Patient, resource_type: str, limit: int, offset: int
) -> tuple[list[StoredVersion], int]:
    """stored_page of every resource of one type in the record (a search with no filter: the commonest).

    One fixed, prepared statement, the same plan for every such search whatever the patient. Shaped
    for the one record it reads: each row carries only what differs between rows (type_page_from);
    the record's wrapped key comes with `patient` (patient_locate_by_fhir_id, a search's first
    statement, reads it; an instance loaded without it is completed first). Carrying the patient's id,
    type and key on every row cost PostgreSQL a third of the statement. Only a page past the end costs
    a second query, for the count alone.
    """
    if any(name not in patient.__dict__ for name in _RECORD_KEY_FIELDS):
        patient.refresh_from_db(fields=_RECORD_KEY_FIELDS)
    sql = _TYPE_PAGE_SQL.get(connection.vendor)
    if sql is None:
        resource = connection.ops.quote_name(Resource._meta.db_table)
        sql = _TYPE_PAGE_SQL[connection.vendor] = (
            f"SELECT {TYPE_PAGE_COLUMNS},"  # noqa: S608
            f" (SELECT COUNT(*) FROM {resource} WHERE patient_id = %s AND resource_type = %s)"
            f"{type_page_from('%s')} ORDER BY r.id"
        )
    key = _PATIENT_PK.get_db_prep_value(patient.pk, connection)
    with prepared_cursor(binary=True) as cursor:
        cursor.execute(sql, [key, resource_type, key, resource_type, limit, offset])
        rows = cursor.fetchall()
    if not rows:
        count = Resource.objects.filter(patient_id=patient.pk, resource_type=resource_type).count() if offset else 0
        return [], count
    wrapped = bytes(patient.wrapped_key) if patient.wrapped_key is not None else None
    stored = type_page_stored(
        rows, patient_id=patient.pk, resource_type=resource_type, wrapped_key=wrapped, key_id=patient.master_key_id
    )
    return stored, int(rows[0][7])


def resource_search_stored(
    *,
    patient: Patient,
    resource_type: str,
    code: str | None = None,
    category: str | None = None,
    date_ge: date | None = None,
    date_le: date | None = None,
    categories_any: Sequence[str] = (),
    limit: int = 100,
    offset: int = 0,
) -> list[StoredVersion]:
    """One page of resource_search as sealed current versions with their keys, in storage order."""
    page = resource_search(
        patient=patient,
        resource_type=resource_type,
        code=code,
        category=category,
        date_ge=date_ge,
        date_le=date_le,
        categories_any=categories_any,
        limit=limit,
        offset=offset,
    )
    return stored_versions_by_ids(list(page.values_list("pk", flat=True)))
