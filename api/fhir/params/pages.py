"""Paging and shape of a searchset: _count, _offset, _summary and _sort."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import QueryDict

from api.fhir.params.checks import bad

COUNT_DEFAULT = 50
COUNT_MAX = 1000


def _integer(params: QueryDict, name: str, default: int, maximum: int | None = None) -> int:
    values = params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise bad(name, "give it once")
    try:
        number = int(values[0])
    except ValueError as exc:
        raise bad(name, "must be a whole number") from exc
    if number < 0:
        raise bad(name, "must not be negative")
    if maximum is not None and number > maximum:
        raise bad(name, f"at most {maximum}")
    return number


SUMMARIES = ("count", "true", "data", "false")


@dataclass(frozen=True)
class Paging:
    count: int = COUNT_DEFAULT
    offset: int = 0
    sort: str = ""  # comma-separated keys, "-" first for descending
    summary: str = ""  # "true" or "data": the entries are cut down (count is count=0, false is the full resource)


def _sort(params: QueryDict, sorts: frozenset[str]) -> str:
    values = params.getlist("_sort")
    if not values:
        return ""
    keys = [key.strip() for value in values for key in value.split(",")]
    names = [key.lstrip("-") for key in keys]
    if any(key not in sorts for key in keys) or len(set(names)) != len(names):
        raise bad("_sort", f"keys from {', '.join(sorted(k for k in sorts if not k.startswith('-')))}, each once")
    return ",".join(keys)


def paging(params: QueryDict, sorts: frozenset[str] = frozenset()) -> Paging:
    """_count (default 50, at most 1000; 0 asks only for the total), _summary, _offset, and _sort.

    _summary: count (the same as _count=0), true (the elements the specification marks as summary),
    data (all but the narrative), false (everything).
    """
    count = _integer(params, "_count", COUNT_DEFAULT, COUNT_MAX)
    summary = params.getlist("_summary")
    if len(summary) > 1 or (summary and summary[0] not in SUMMARIES):
        raise bad("_summary", f"give one of {', '.join(SUMMARIES)}")
    if summary == ["count"]:
        count = 0
    offset = _integer(params, "_offset", 0, 10**9)
    shape = summary[0] if summary and summary[0] in ("true", "data") else ""
    return Paging(count=count, offset=offset, sort=_sort(params, sorts), summary=shape)
