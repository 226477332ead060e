"""Reads of the record store that never decrypt: row lookups and blind-index search.

What comes back is ciphertext and identities. Turning a StoredVersion into
plaintext is records.decrypt's job, and only the consent gate may call it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from django.db import connection
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils.dateparse import parse_datetime

from healthledger.errors import ResourceNotFound
from healthledger.lib.db import prepared_cursor
from records import blind_index
from records.models import IndexToken, Patient, Resource, ResourceVersion

SEARCH_LIMIT_MAX = 1000

_STORED_FIELDS = (
    "resource__patient_id",
    "resource__resource_type",
    "resource__fhir_id",
    "version",
    "ciphertext",
    "wrapped_data_key",
    "resource__patient__wrapped_key",
    "resource__patient__master_key_id",
    "resource__current_version",
    "resource__head_mac",
)


@dataclass(frozen=True)
class StoredVersion:
    """One version's sealed content with the wrapped keys needed to open it (None once erased)."""

    patient_id: uuid.UUID
    resource_type: str
    fhir_id: str
    version: int
    ciphertext: bytes = field(repr=False)
    wrapped_data_key: bytes = field(repr=False)
    wrapped_patient_key: bytes | None = field(repr=False)
    master_key_id: str
    # The resource row's current version and its head MAC: a read of the current version checks
    # that the MAC names it (records.decrypt), so a rolled-back row fails loudly.
    current_version: int = 0
    head_mac: bytes = field(default=b"", repr=False)

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.fhir_id}/_history/{self.version}"


def _stored(row: Sequence[Any]) -> StoredVersion:
    """A StoredVersion from a row of _STORED_FIELDS, from the ORM or a raw cursor (either driver's types)."""
    patient_id, resource_type, fhir_id, number, ciphertext, wrapped_data_key, wrapped_key, key_id, current, head = row
    return StoredVersion(
        patient_id=patient_id if isinstance(patient_id, uuid.UUID) else uuid.UUID(str(patient_id)),
        resource_type=resource_type,
        fhir_id=fhir_id,
        version=int(number),
        ciphertext=bytes(ciphertext),
        wrapped_data_key=bytes(wrapped_data_key),
        wrapped_patient_key=bytes(wrapped_key) if wrapped_key is not None else None,
        master_key_id=key_id,
        current_version=int(current),
        head_mac=bytes(head),
    )


def _stored_version_sql(*, pinned: bool) -> str:
    quote = connection.ops.quote_name
    version, resource, patient = (quote(m._meta.db_table) for m in (ResourceVersion, Resource, Patient))
    wanted = "%s" if pinned else "r.current_version"
    return (
        "SELECT r.resource_type, r.fhir_id, v.version, v.ciphertext, v.wrapped_data_key,"  # noqa: S608 (model names)
        " p.wrapped_key, p.master_key_id, r.current_version, r.head_mac"
        f" FROM {version} v JOIN {resource} r ON r.id = v.resource_id JOIN {patient} p ON p.id = r.patient_id"
        f" WHERE r.fhir_id = %s AND r.resource_type = %s AND r.patient_id = %s AND v.version = {wanted}"
    )


def stored_version_get(
    *, patient: Patient, resource_type: str, resource_id: str, version: int | None = None
) -> StoredVersion | None:
    """The current (or given) version of one of the patient's resources, with its keys, in one query.

    Plain SQL on purpose: this is every read's only query, and building it through
    the ORM costs several times what the database spends answering it.
    """
    pinned = version is not None
    sql = _SQL_CACHE.get(pinned)
    if sql is None:
        sql = _SQL_CACHE[pinned] = _stored_version_sql(pinned=pinned)
    patient_key = _PATIENT_PK.get_db_prep_value(patient.pk, connection)
    params: list[Any] = [resource_id, resource_type, patient_key] + ([version] if pinned else [])
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    resource_type, fhir_id, number, ciphertext, wrapped_data_key, wrapped_key, master_key_id, current, head = row
    return StoredVersion(
        patient_id=patient.pk,
        resource_type=resource_type,
        fhir_id=fhir_id,
        version=number,
        ciphertext=bytes(ciphertext),
        wrapped_data_key=bytes(wrapped_data_key),
        wrapped_patient_key=bytes(wrapped_key) if wrapped_key is not None else None,
        master_key_id=master_key_id,
        current_version=int(current),
        head_mac=bytes(head),
    )


_SQL_CACHE: dict[bool, str] = {}
_PATIENT_PK = Patient._meta.get_field("id")


def stored_versions_current(*, patient: Patient) -> list[StoredVersion]:
    """The current version of every resource of the patient, in one query."""
    rows = ResourceVersion.objects.filter(resource__patient_id=patient.pk, version=F("resource__current_version"))
    return [_stored(row) for row in rows.order_by("resource_id").values_list(*_STORED_FIELDS)]


def resource_get(*, patient: Patient, resource_type: str, resource_id: str) -> Resource:
    try:
        return Resource.objects.get(patient=patient, resource_type=resource_type, fhir_id=resource_id)
    except Resource.DoesNotExist as exc:
        raise ResourceNotFound("resource not found") from exc


def resource_versions(*, patient: Patient, resource_type: str, resource_id: str) -> list[int]:
    """Version numbers of one resource, oldest first (empty when it is not the patient's)."""
    return list(
        ResourceVersion.objects.filter(
            resource__patient=patient, resource__resource_type=resource_type, resource__fhir_id=resource_id
        )
        .order_by("version")
        .values_list("version", flat=True)
    )


def patient_for_user(*, user_id: int) -> Patient | None:
    return Patient.objects.filter(user_id=user_id).first()


def _category_tokens(patient: Patient, categories: Sequence[str]) -> list[bytes]:
    return [blind_index.token(patient_id=patient.pk, kind="category", value=c) for c in categories]


def resource_in_categories(
    *, patient: Patient, resource_type: str, resource_id: str, categories: Sequence[str]
) -> bool:
    """Whether the resource is indexed under any of the categories ("system|code"), without decrypting."""
    return IndexToken.objects.filter(
        resource__patient_id=patient.pk,
        resource__resource_type=resource_type,
        resource__fhir_id=resource_id,
        token__in=_category_tokens(patient, categories),
    ).exists()


def _has_token(tokens: list[bytes]) -> Exists:
    return Exists(IndexToken.objects.filter(resource_id=OuterRef("pk"), token__in=tokens))


@dataclass(frozen=True)
class SearchCriteria:
    """The filters of one search, all optional and all applied together (AND).

    `codes` and `categories` are groups of "system|code" alternatives: a resource matches a
    group when it carries any of them. Dates are inclusive calendar days (the blind index's
    buckets); `updated_ge`/`updated_lt` are a half-open range of Resource.updated_at.
    """

    ids: tuple[str, ...] = ()
    codes: tuple[tuple[str, ...], ...] = ()
    categories: tuple[tuple[str, ...], ...] = ()
    date_ge: date | None = None
    date_le: date | None = None
    updated_ge: datetime | None = None
    updated_lt: datetime | None = None
    # Groups of "<parameter>=<value>" term alternatives (status, gender, identifier, name ...), ANDed.
    terms: tuple[tuple[str, ...], ...] = ()
    # Excluded (ne): inclusive ranges of days, and half-open ranges of update instants (None: open above).
    date_not: tuple[tuple[date, date], ...] = ()
    updated_not: tuple[tuple[datetime, datetime | None], ...] = ()
    # Groups of term alternatives a match must carry none of (value-quantity ne), each group on its own.
    terms_not: tuple[tuple[str, ...], ...] = ()


def resource_matching(
    *, patient: Patient, resource_type: str | None, criteria: SearchCriteria, categories_any: Sequence[str] = ()
) -> QuerySet[Resource]:
    """Every resource of the patient matching the criteria (and, when given, one of `categories_any`):
    unordered, unsliced, through blind-index tokens only."""
    found = Resource.objects.filter(patient_id=patient.pk)
    if resource_type:
        found = found.filter(resource_type=resource_type)
    if criteria.ids:
        found = found.filter(fhir_id__in=criteria.ids)
    groups = [("code", group) for group in criteria.codes] + [("category", g) for g in criteria.categories]
    groups += [("term", group) for group in criteria.terms]
    if categories_any:
        # A grant narrowed to categories: the resource must carry at least one of them.
        groups.append(("category", tuple(categories_any)))
    for kind, group in groups:
        found = found.filter(_has_token([blind_index.token(patient_id=patient.pk, kind=kind, value=v) for v in group]))
    if criteria.date_ge is not None or criteria.date_le is not None:
        if criteria.date_ge is not None and criteria.date_le is not None and criteria.date_ge > criteria.date_le:
            return found.none()
        found = found.filter(
            _has_token(
                blind_index.date_range_tokens(patient_id=patient.pk, date_ge=criteria.date_ge, date_le=criteria.date_le)
            )
        )
    for group in criteria.terms_not:
        tokens = [blind_index.token(patient_id=patient.pk, kind="term", value=v) for v in group]
        found = found.filter(~_has_token(tokens))
    for first, last in criteria.date_not:
        found = found.filter(
            ~_has_token(blind_index.date_range_tokens(patient_id=patient.pk, date_ge=first, date_le=last))
        )
    for start, end in criteria.updated_not:
        found = found.exclude(updated_at__gte=start, **({"updated_at__lt": end} if end is not None else {}))
    if criteria.updated_ge is not None:
        found = found.filter(updated_at__gte=criteria.updated_ge)
    if criteria.updated_lt is not None:
        found = found.filter(updated_at__lt=criteria.updated_lt)
    return found


def resource_search(
    *,
    patient: Patient,
    resource_type: str | None = None,
    code: str | None = None,
    category: str | None = None,
    date_ge: date | None = None,
    date_le: date | None = None,
    categories_any: Sequence[str] = (),
    limit: int = 100,
    offset: int = 0,
) -> QuerySet[Resource]:
    """The patient's resources matching every given criterion, through blind-index tokens only.

    `code` and `category` are "system|code"; a date criterion matches a resource
    with any indexed date in [date_ge, date_le]. Ordered by storage order.
    """
    criteria = SearchCriteria(
        codes=((code,),) if code else (),
        categories=((category,),) if category else (),
        date_ge=date_ge,
        date_le=date_le,
    )
    found = resource_matching(
        patient=patient, resource_type=resource_type, criteria=criteria, categories_any=categories_any
    )
    limit = max(0, min(limit, SEARCH_LIMIT_MAX))
    offset = max(0, offset)
    return found.order_by("pk")[offset : offset + limit]


# Sorts on columns kept in the clear: the server's last update and the resource id, then the row.
COLUMN_SORTS = {"_lastUpdated": ("updated_at", "pk"), "_id": ("fhir_id", "pk")}


def resource_ids_by_column(*, matching: QuerySet[Resource], sort: str, page: tuple[int, int]) -> list[int]:
    """One page (offset, limit) of `matching`'s ids ordered by a COLUMN_SORTS key ("-" first: descending)."""
    descending = sort.startswith("-")
    columns = COLUMN_SORTS[sort.removeprefix("-")]
    ordering = [f"-{c}" if descending else c for c in columns]
    offset, limit = page
    return list(matching.order_by(*ordering).values_list("pk", flat=True)[offset : offset + limit])


def stored_versions_by_ids(resource_pks: Sequence[int]) -> list[StoredVersion]:
    """The sealed current versions of these resources, in the order given, in one query."""
    rows = ResourceVersion.objects.filter(resource_id__in=resource_pks, version=F("resource__current_version"))
    by_pk = {row[0]: _stored(row[1:]) for row in rows.values_list("resource_id", *_STORED_FIELDS)}
    return [by_pk[pk] for pk in resource_pks if pk in by_pk]


def stored_patient_resources(*, patients: Sequence[Patient]) -> list[StoredVersion]:
    """The current version of each record's own Patient resource (the one `Patient.fhir_id` names), in one query."""
    wanted = {(p.pk, p.fhir_id) for p in patients if p.fhir_id}
    if not wanted:
        return []
    rows = ResourceVersion.objects.filter(
        resource__patient_id__in=[pid for pid, _ in wanted],
        resource__resource_type="Patient",
        resource__fhir_id__in=[fid for _, fid in wanted],
        version=F("resource__current_version"),
    )
    found = [_stored(row) for row in rows.order_by("resource_id").values_list(*_STORED_FIELDS)]
    return [item for item in found if (item.patient_id, item.fhir_id) in wanted]


def stored_matching_of_patients(
    *, patients: Sequence[Patient], resource_type: str, codes: Sequence[str] = ()
) -> list[StoredVersion]:
    """The current versions of several records' resources of one type carrying any of `codes` (none: every one of
    the type), in one query, by record then storage order: a research chunk's search, asked once for the chunk.

    The blind-index tokens are each record's own, so a token can only match its own record's resources.
    """
    if not patients:
        return []
    rows = ResourceVersion.objects.filter(
        resource__patient_id__in=[p.pk for p in patients],
        resource__resource_type=resource_type,
        version=F("resource__current_version"),
    )
    if codes:
        tokens = [blind_index.token(patient_id=p.pk, kind="code", value=c) for p in patients for c in codes]
        rows = rows.filter(Exists(IndexToken.objects.filter(resource_id=OuterRef("resource_id"), token__in=tokens)))
    ordered = rows.order_by("resource__patient_id", "resource_id")
    return [_stored(row) for row in ordered.values_list(*_STORED_FIELDS)]


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
    # joined to their versions: joining every match and then sorting the wide rows read each match's ciphertext.
    return (
        f"SELECT (SELECT COUNT(*) FROM ({matches}) m), r.patient_id, r.resource_type, r.fhir_id,"  # noqa: S608
        " v.version, v.ciphertext, v.wrapped_data_key, p.wrapped_key, p.master_key_id, r.current_version, r.head_mac"
        f" FROM (SELECT m.pk FROM ({matches}) m ORDER BY m.pk LIMIT %s OFFSET %s) page"
        f" JOIN {resource} r ON r.id = page.pk"
        f" JOIN {version} v ON v.resource_id = r.id AND v.version = r.current_version"
        f" JOIN {patient} p ON p.id = r.patient_id ORDER BY r.id"
    )


_TYPE_PAGE_SQL: dict[str, str] = {}


def stored_page_of_type(
    *, patient: Patient, resource_type: str, limit: int, offset: int
) -> tuple[list[StoredVersion], int]:
    """stored_page of every resource of one type in the record (a search with no filter: the commonest).

    The same statement as stored_page with the matches written out: no queryset is compiled, and the
    prepared plan is the same for every such search, whatever the patient.
    """
    sql = _TYPE_PAGE_SQL.get(connection.vendor)
    if sql is None:
        resource = connection.ops.quote_name(Resource._meta.db_table)
        matches = f"SELECT id AS pk FROM {resource} WHERE patient_id = %s AND resource_type = %s"  # noqa: S608
        sql = _TYPE_PAGE_SQL[connection.vendor] = _page_sql(matches)
    key = _PATIENT_PK.get_db_prep_value(patient.pk, connection)
    with prepared_cursor(binary=True) as cursor:
        cursor.execute(sql, [key, resource_type, key, resource_type, limit, offset])
        rows = cursor.fetchall()
    if not rows:
        count = Resource.objects.filter(patient_id=patient.pk, resource_type=resource_type).count() if offset else 0
        return [], count
    return [_stored(row[1:]) for row in rows], int(rows[0][0])


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


def _sort_buckets(resource_ids: QuerySet[Resource, Any], tokens: dict[bytes, str]) -> dict[int, str]:
    if not tokens:
        return {}
    rows = IndexToken.objects.filter(resource_id__in=resource_ids, token__in=list(tokens)).values_list(
        "resource_id", "token"
    )
    return {resource_id: tokens[bytes(token)] for resource_id, token in rows}


def _primary_days(patient: Patient, ids: QuerySet[Resource, Any]) -> dict[int, str]:
    """Resource id -> its primary clinical day ("YYYY-MM-DD"), from the blind-index sort tokens alone."""
    years = _sort_buckets(ids, blind_index.sort_tokens(patient_id=patient.pk, buckets=blind_index.sort_years()))
    month_tokens = blind_index.sort_tokens(patient_id=patient.pk, buckets=blind_index.sort_months(set(years.values())))
    months = _sort_buckets(ids, month_tokens)
    day_tokens = blind_index.sort_tokens(patient_id=patient.pk, buckets=blind_index.sort_days(set(months.values())))
    return _sort_buckets(ids, day_tokens)


def resource_ids_by_date(*, patient: Patient, matching: QuerySet[Resource], descending: bool) -> list[int]:
    """The ids of `matching` ordered by their primary clinical date (day precision), then by id; undated last.

    Reads only blind-index "sort" tokens, narrowing year -> month -> day, so ordering a
    search never decrypts anything: a few hundred keyed hashes and three indexed queries.
    """
    return resource_ids_sorted(patient=patient, matching=matching, keys=("-date" if descending else "date",))


SORT_KEYS = frozenset({"date", "_lastUpdated", "_id"})


def resource_ids_sorted(*, patient: Patient, matching: QuerySet[Resource], keys: Sequence[str]) -> list[int]:
    """The ids of `matching` ordered by several keys ("-" first: descending), then by id.

    Keys: "date" (the primary clinical day, from sort tokens: nothing is decrypted; undated last
    either way), "_lastUpdated" and "_id" (row columns kept in the clear).
    """
    rows = list(matching.order_by("pk").values_list("pk", "updated_at", "fhir_id"))
    days = _primary_days(patient, matching.values("pk")) if any(k.lstrip("-") == "date" for k in keys) else {}
    # Python's sort is stable, also with reverse=True: sorting by the last key first leaves the first key leading.
    for key in reversed(keys):
        name, descending = key.lstrip("-"), key.startswith("-")
        if name == "date":
            dated = sorted((r for r in rows if r[0] in days), key=lambda r: days[r[0]], reverse=descending)
            rows = dated + [r for r in rows if r[0] not in days]
        else:
            column = 1 if name == "_lastUpdated" else 2
            rows.sort(key=lambda r: r[column], reverse=descending)
    return [r[0] for r in rows]


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
    """The record whose Patient has this server id, with `extras` (about it, as `p`) from the same statement."""
    key = (connection.vendor, tuple(extra.sql for extra in extras))
    sql = _PATIENT_LOCATE_SQL.get(key)
    if sql is None:
        table = connection.ops.quote_name(Patient._meta.db_table)
        more = "".join(f", {extra.sql}" for extra in extras)
        # The `<> ''` lets a prepared (generic) plan use the partial unique index on fhir_id.
        sql = _PATIENT_LOCATE_SQL[key] = (
            f"SELECT p.id, p.user_id{more} FROM {table} p WHERE p.fhir_id = %s AND p.fhir_id <> ''"  # noqa: S608
        )
    with prepared_cursor() as cursor:
        params: list[Any] = [param for extra in extras for param in extra.params]
        cursor.execute(sql, [*params, fhir_id])
        row = cursor.fetchone()
    if row is None:
        return None
    pk = row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0]))
    return Patient.from_db(connection.alias, ["id", "user_id"], [pk, row[1]]), tuple(row[2:])
