"""An export's `_typeFilter` and `_since`: parsed at kick-off, turned into the gate's searches by the worker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from django.http import QueryDict

from api.bulk_models import ExportJob
from api.fhir.params import bad, unknown_check
from api.fhir.records import _criteria, supported_parameters
from consent import gate


@dataclass(frozen=True)
class TypeFilter:
    resource_type: str
    query: str  # the parameters after "?", as asked


def type_filter_parse(raw: str, types: Sequence[str]) -> TypeFilter:
    """One `_typeFilter` value (`Observation?code=...&date=ge2024`): its type must be exported, its parameters
    searchable on that type; 400 otherwise, at kick-off, before anything is read."""
    resource_type, sep, query = raw.partition("?")
    if not sep or resource_type not in types:
        raise bad("_typeFilter", f"{raw[:80]!r} is not <type>?<search parameters> of an exported type")
    asked = QueryDict(query)
    unknown = unknown_check(asked, supported_parameters(resource_type) - {"_sort"}, strict=True)
    if unknown or any(name.startswith("_") and name not in ("_id", "_lastUpdated") for name in asked):
        raise bad("_typeFilter", f"{raw[:80]!r}: only search parameters of {resource_type} are supported")
    _criteria(asked, resource_type)  # a bad value is a 400 here, not a failure in the worker
    return TypeFilter(resource_type=resource_type, query=query)


def criteria_for(job: ExportJob, resource_type: str) -> list[gate.SearchCriteria]:
    """The searches that export one type: one per _typeFilter of it (ORed), else everything; each from _since."""
    filters = [f for f in job.type_filters if f.split("?", 1)[0] == resource_type]
    found: list[gate.SearchCriteria] = []
    for raw in filters or [f"{resource_type}?"]:
        criteria, satisfiable = _criteria(QueryDict(raw.split("?", 1)[1]), resource_type)
        if not satisfiable:
            continue
        if job.since is not None and (criteria.updated_ge is None or criteria.updated_ge < job.since):
            criteria = replace(criteria, updated_ge=job.since)
        found.append(criteria)
    return found
