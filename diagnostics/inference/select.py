"""Picking a model's inputs out of a set of resources, the way the blind index finds them.

The worker fetches each input through the gate by resource type and code; this
function does the same selection over resources already in hand (a parsed
Bundle in a test or a benchmark): a resource joins an input when its type is the
input's and one of its searchable codes (the main code, an Observation
component's code, a MedicationRequest's medication) is among the input's codes,
or, for an input declared by a value set, when the value set holds one of them.
Dates, statuses and units are left to the model, as with the worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from diagnostics.inference.base import ModelSpec
from diagnostics.inference.values import clinical_time, concept_tokens, parse_day
from diagnostics.inference.valueset import value_set

SEARCHED_CONCEPTS: dict[str, tuple[str, ...]] = {
    "Observation": ("code", "component.code"),
    "Condition": ("code",),
    "MedicationRequest": ("medicationCodeableConcept",),
}


def searched_concepts(resource: dict[str, Any]) -> list[Any]:
    """The CodeableConcepts of a resource that the blind index searches by code."""
    found: list[Any] = []
    for path in SEARCHED_CONCEPTS.get(resource.get("resourceType", ""), ("code",)):
        nodes: list[Any] = [resource]
        for step in path.split("."):
            following: list[Any] = []
            for node in nodes:
                value = node.get(step) if type(node) is dict else None
                following.extend(value if type(value) is list else [value])
            nodes = following
        found.extend(nodes)
    return found


def _searchable_tokens(resource: dict[str, Any]) -> set[str]:
    return {token for node in searched_concepts(resource) for token in concept_tokens(node)}


def _in_value_set(name: str, resource: dict[str, Any]) -> bool:
    held = value_set(name)
    return any(held.match(node) is not None for node in searched_concepts(resource))


def _day_of(resource: dict[str, Any]) -> date | None:
    kind = resource.get("resourceType")
    if kind == "Observation":
        return parse_day(clinical_time(resource))
    if kind == "Condition":
        return parse_day(resource.get("onsetDateTime")) or parse_day(resource.get("recordedDate"))
    if kind == "MedicationRequest":
        return parse_day(resource.get("authoredOn"))
    return None


def newest_input_day(spec: ModelSpec, inputs: Mapping[str, Sequence[dict[str, Any]]], *, upto: date) -> date | None:
    """The date of the newest resource among the model's required inputs, up to `upto`: the default as-of date.

    A record exported years ago is scored as of its own newest data, and labelled with that date, instead
    of being told every value is too old.
    """
    days = [
        day
        for item in spec.inputs
        if item.required and item.resource_type != "Patient"
        for resource in inputs.get(item.name, ())
        if (day := _day_of(resource)) is not None and day <= upto
    ]
    return max(days, default=None)


def inputs_from_resources(spec: ModelSpec, resources: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each of the model's inputs -> the resources of its type carrying one of its codes (Patient: every Patient)."""
    pool = [r for r in resources if type(r) is dict]
    selected: dict[str, list[dict[str, Any]]] = {}
    for item in spec.inputs:
        wanted = set(item.codes)
        of_type = [resource for resource in pool if resource.get("resourceType") == item.resource_type]
        if item.resource_type == "Patient":
            selected[item.name] = of_type
        elif item.value_set is not None:
            selected[item.name] = [resource for resource in of_type if _in_value_set(item.value_set, resource)]
        else:
            selected[item.name] = [resource for resource in of_type if _searchable_tokens(resource) & wanted]
    return selected
