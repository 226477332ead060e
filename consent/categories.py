"""A grant's categories, and which of them narrow a given resource type.

An entry is "system|code", which narrows every resource type of the grant (what grants always
meant, so existing grants and their scope commitments keep their meaning), or
"Type:system|code", which narrows that one resource type only. A type with neither kind of entry
is not narrowed. A code system is a URI, whose scheme is lower case ("http:", "urn:"); a resource
type starts upper case, which is how a qualified entry is told apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_QUALIFIED = re.compile(r"^([A-Z][A-Za-z]*):(.*)$", re.DOTALL)


def split_category(entry: str) -> tuple[str, str]:
    """("Type", "system|code") for a qualified entry, ("", "system|code") for one narrowing every type."""
    match = _QUALIFIED.match(entry)
    if match is None:
        return "", entry
    return match.group(1), match.group(2)


def categories_for(categories: Iterable[str], resource_type: str) -> tuple[str, ...]:
    """The "system|code" categories narrowing `resource_type` under a grant's categories; () when none do.

    Unqualified entries narrow every type; "Type:system|code" entries narrow only their type.
    """
    found: list[str] = []
    for entry in categories:
        qualifier, category = split_category(entry)
        if (not qualifier or qualifier == resource_type) and category not in found:
            found.append(category)
    return tuple(found)


def category_types(categories: Iterable[str]) -> frozenset[str]:
    """The resource types named by qualified entries."""
    return frozenset(q for q, _ in map(split_category, categories) if q)
