"""_include and _revinclude: the resources a search page adds, each type searched through the gate."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from django.http import QueryDict

from api.auth import (
    TokenContext,
)
from api.fhir import params
from api.fhir.records.base import MAX_QUERY_LOGGED, RECORD_TYPES
from consent import gate
from healthledger.errors import ResourceNotFound
from records.fhir.search_parameters import (
    reference_elements,
    reference_key,
    search_parameters,
)
from records.models import Patient


@dataclass(frozen=True)
class Include:
    """_include=<type>:<param> (forward: what the page refers to) or _revinclude (reverse: what refers to it)."""

    reverse: bool
    source_type: str
    parameter: str


def _includes(query: QueryDict, resource_type: str) -> list[Include]:
    """The search's _include and _revinclude, each a reference parameter of the registry; 400 otherwise."""
    found: list[Include] = []
    for name, reverse in (("_include", False), ("_revinclude", True)):
        for raw in query.getlist(name):
            source_type, _, parameter = raw.partition(":")
            parameter = parameter.split(":")[0]  # a target-type or :iterate modifier is not taken
            elements = reference_elements(source_type, parameter) if source_type in RECORD_TYPES else ()
            if not elements or (not reverse and source_type != resource_type):
                raise params.bad(name, f"{raw!r} is not <type>:<reference parameter> of a type this server searches")
            if reverse and search_parameters(source_type)[parameter].index != "term":
                raise params.bad(name, f"{raw!r}: only encounter and target references can be followed back")
            found.append(Include(reverse=reverse, source_type=source_type, parameter=parameter))
    return found


def _included(
    context: TokenContext,
    caller: gate.Caller,
    patient: Patient,
    includes: list[Include],
    refs: list[str],
    bodies: list[bytes],
    logged: str,
    target: gate.SearchTarget | None = None,
) -> list[tuple[str, bytes]]:
    """The resources _include and _revinclude add, each type searched through the gate in the same record.

    Each is decided on the grants the page's search fetched (`target`): one request, one look at them.

    A type the token's scopes or the grant do not cover adds nothing, silently: what is left out
    says nothing the caller may not know. References are followed within the record only.
    """
    wanted: dict[str, gate.SearchCriteria] = {}
    resources = [orjson.loads(body) for body in bodies] if any(not i.reverse for i in includes) else []
    for include in includes:
        if include.reverse:
            group = tuple(f"{include.parameter}={ref}" for ref in refs)
            wanted[include.source_type] = gate.SearchCriteria(terms=(group,))
            continue
        for resource in resources:
            for element in reference_elements(include.source_type, include.parameter):
                values = resource.get(element)
                for value in values if isinstance(values, list) else [values]:
                    key = reference_key(value.get("reference")) if isinstance(value, dict) else None
                    if key is None or key in refs:
                        continue
                    target_type, target_id = key.split("/")
                    ids = wanted.get(target_type, gate.SearchCriteria()).ids
                    wanted[target_type] = gate.SearchCriteria(ids=(*ids, target_id) if target_id not in ids else ids)
    found: list[tuple[str, bytes]] = []
    for target_type, criteria in sorted(wanted.items()):
        if target_type not in RECORD_TYPES or not context.scopes.allows(target_type, "r"):
            continue
        try:
            page = gate.resource_search_counted(
                caller=caller,
                patient=patient,
                resource_type=target_type,
                criteria=criteria,
                limit=params.COUNT_MAX,
                query=f"include {target_type} for: {logged}"[:MAX_QUERY_LOGGED],
                target=target,
            )
        except ResourceNotFound:
            continue
        found += [
            (ref.rsplit("/_history/", 1)[0], body)
            for ref, body in zip(page.references, page.bodies, strict=True)
            if ref.rsplit("/_history/", 1)[0] not in refs
        ]
    return found
