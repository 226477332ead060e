"""Ordering a search's matches: by columns kept in the clear, or by clinical date through blind-index sort tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet

from records import blind_index
from records.models import IndexToken, Patient, Resource

# Sorts on columns kept in the clear: the server's last update and the resource id, then the row.
COLUMN_SORTS = {"_lastUpdated": ("updated_at", "pk"), "_id": ("fhir_id", "pk")}


def resource_ids_by_column(*, matching: QuerySet[Resource], sort: str, page: tuple[int, int]) -> list[int]:
    """One page (offset, limit) of `matching`'s ids ordered by a COLUMN_SORTS key ("-" first: descending)."""
    descending = sort.startswith("-")
    columns = COLUMN_SORTS[sort.removeprefix("-")]
    ordering = [f"-{c}" if descending else c for c in columns]
    offset, limit = page
    return list(matching.order_by(*ordering).values_list("pk", flat=True)[offset : offset + limit])


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
