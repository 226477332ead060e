"""The /fhir shortcut routes resolve every path exactly as the routes in order would without them."""

from __future__ import annotations

import pytest
from django.urls import Resolver404, URLResolver
from django.urls.resolvers import RegexPattern

from api import urls
from api.fhir.records.base import RECORD_TYPES

SUFFIXES = (
    *("", "/abc-1", "/user-5", "/$export", "/$everything", "/$diagnose", "/_search"),
    *("/a/Observation", "/x/_history", "/x/_history/2", "/a/b/c"),
)


def _resolver(patterns: list) -> URLResolver:  # type: ignore[type-arg]
    return URLResolver(RegexPattern(r"^/fhir/"), patterns)


def test_every_type_resolves_as_without_the_shortcuts() -> None:
    with_shortcuts = _resolver(urls.fhir_patterns)
    in_order = _resolver([p for p in urls.fhir_patterns if p not in urls.SHORTCUTS])
    for resource_type in sorted(RECORD_TYPES | {"Foo", "Consent", "AuditEvent", "Bundle"}):
        for suffix in SUFFIXES:
            path = f"/fhir/{resource_type}{suffix}"
            fast, ordered = with_shortcuts.resolve(path), in_order.resolve(path)
            assert (fast.func, fast.args, fast.kwargs) == (ordered.func, ordered.args, ordered.kwargs), path


def test_a_record_search_and_read_take_the_shortcut_and_a_claimed_type_does_not() -> None:
    shortcut_only = _resolver(urls.SHORTCUTS)
    assert shortcut_only.resolve("/fhir/Observation").kwargs == {"resource_type": "Observation"}
    read = shortcut_only.resolve("/fhir/Observation/o-1")
    assert read.kwargs == {"resource_type": "Observation", "resource_id": "o-1"}
    for claimed in ("/fhir/Group", "/fhir/Task/t-1", "/fhir/Patient/p-1", "/fhir/Practitioner/user-5", "/fhir/Foo"):
        with pytest.raises(Resolver404):
            shortcut_only.resolve(claimed)
