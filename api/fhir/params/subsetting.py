"""Subsetted resources: _elements and _summary cut a stored resource down, and mark it SUBSETTED."""

from __future__ import annotations

import re

import orjson
from django.http import QueryDict

from api.fhir.params.checks import bad
from records.fhir.elements import summary_elements

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def elements(params: QueryDict, resource_type: str) -> frozenset[str] | None:
    """The top-level elements `_elements` asks for (a "Type." prefix allowed), or None when it is not given."""
    values = params.getlist("_elements")
    if not values:
        return None
    names: set[str] = set()
    for raw in values:
        for part in (p.strip() for p in raw.split(",")):
            name = part.removeprefix(f"{resource_type}.")
            if not re.fullmatch(r"[a-z][A-Za-z0-9]{0,63}", name):
                raise bad("_elements", f"{part!r} is not an element name")
            names.add(name)
    return frozenset(names)


def summarized(body: bytes, summary: str, resource_type: str) -> bytes:
    """A resource cut down as `_summary` asks: true keeps the summary elements, data drops the narrative."""
    if summary == "data":
        return subset(body, None, drop=frozenset({"text"}))
    return subset(body, summary_elements(resource_type))


def subset(body: bytes, names: frozenset[str] | None, drop: frozenset[str] = frozenset()) -> bytes:
    """A resource with only the named elements (None: all but `drop`; always resourceType, id, meta),
    marked SUBSETTED as FHIR asks."""
    resource = orjson.loads(body)
    kept = {
        k: v
        for k, v in resource.items()
        if (k in names if names is not None else k not in drop) or k in ("resourceType", "id", "meta")
    }
    meta = dict(kept.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)
