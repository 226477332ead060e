"""Search terms: what the index stores of a resource for each term parameter, and what a query value looks for.

A term parameter (records.fhir.search_parameters.registry.TERMS) is answered by "term" tokens of the blind
index, each "<parameter>=<value>": search_terms extracts them from a resource when it is stored, term_query
and term_query_full turn a query value into the token groups a match must (or must not) carry.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from records.fhir.index import DEFAULT_MAIN_CODES, MAIN_CODES
from records.fhir.quantity import quantity_query, quantity_tokens
from records.fhir.search_parameters.registry import OWN_CODE_TERM, TERMS, SearchParameter, Term, search_parameters

_CODE_TEXT = "code:text"
# A string is indexed by its words' prefixes up to this length; a longer query word is cut to it.
PREFIX_MAX = 24


def _words(text: str) -> list[str]:
    """A string's words for search: accents dropped, case folded (FHIR string search)."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return [w for w in "".join(c if c.isalnum() else " " for c in plain.casefold()).split() if w]


def _prefixes(words: Iterable[str]) -> set[str]:
    return {word[:length] for word in words for length in range(1, min(len(word), PREFIX_MAX) + 1)}


def _coded(value: Any, code_key: str) -> set[str]:
    """'system|code', '|code' (no system) and the bare 'code' of a Coding or Identifier."""
    code = value.get(code_key) if type(value) is dict else None
    if type(code) is not str:
        return set()
    system = value.get("system")
    return {f"{system if type(system) is str else ''}|{code}", code}


def reference_key(reference: Any) -> str | None:
    """ "Type/id" of a literal reference, relative or absolute (a version dropped); None for anything else."""
    if type(reference) is not str or reference.startswith(("urn:", "#")):
        return None
    parts = reference.split("/_history/", 1)[0].rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2][:1].isupper() or not parts[-2].isalpha() or not parts[-1]:
        return None
    return f"{parts[-2]}/{parts[-1]}"


def _at(node: Any, path: str) -> list[Any]:
    """The values at a path of elements from the root, following repeating elements on the way."""
    found = [node]
    for name in path.split("."):
        step: list[Any] = []
        for item in found:
            value = item.get(name) if type(item) is dict else None
            step.extend(value if type(value) is list else [] if value is None else [value])
        found = step
    return found


def _concept_words(value: Any) -> list[str]:
    """The words of a CodeableConcept's text and its codings' displays (what code:text searches)."""
    if type(value) is not dict:
        return []
    texts = [value.get("text")]
    codings = value.get("coding")
    texts += [c.get("display") for c in (codings if type(codings) is list else []) if type(c) is dict]
    return [w for text in texts if type(text) is str for w in _words(text)]


def _term_values(term: Term, value: Any) -> set[str]:
    if term.reads == "quantity":
        return quantity_tokens(value)
    if term.reads == "text":
        return _prefixes(_concept_words(value))
    if term.reads == "reference":
        key = reference_key(value.get("reference")) if type(value) is dict else None
        return {key} if key is not None else set()
    if term.reads == "code":
        return {value} if type(value) is str else set()
    if term.reads == "concept":
        codings = value.get("coding") if type(value) is dict else None
        return {t for c in (codings if type(codings) is list else []) for t in _coded(c, "code")}
    if term.reads == "identifier":
        return _coded(value, "value")
    if type(value) is not dict:
        return set()
    parts: list[Any] = []
    if term.reads in ("name", "family"):
        parts.append(value.get("family"))
    if term.reads in ("name", "given"):
        given = value.get("given")
        parts.extend(given if type(given) is list else [])
    if term.reads == "name":
        parts.append(value.get("text"))
    return _prefixes(w for part in parts if type(part) is str for w in _words(part))


def _code_text_term(resource_type: str) -> Term | None:
    """code:text of a type: the words of what its `code` parameter reads."""
    parameter = search_parameters(resource_type).get("code")
    if parameter is None or "text" not in parameter.modifiers:
        return None
    paths = ("code",) if resource_type in OWN_CODE_TERM else MAIN_CODES.get(resource_type, DEFAULT_MAIN_CODES)
    return Term(_CODE_TEXT, "string", "|".join(paths), "text", frozenset({resource_type}), "")


def search_terms(resource: dict[str, Any]) -> frozenset[str]:
    """The "term" tokens' values of one resource: "<parameter>=<value>" for every term parameter of its type."""
    resource_type = resource.get("resourceType", "")
    found: set[str] = set()
    text = _code_text_term(resource_type) if type(resource_type) is str else None
    for term in (*TERMS, *([text] if text is not None else [])):
        if resource_type not in term.types:
            continue
        for path in term.element.split("|"):
            for value in _at(resource, path):
                found.update(f"{term.code}={v}" for v in _term_values(term, value))
    return frozenset(found)


@dataclass(frozen=True)
class TermQuery:
    """What one query value asks of the term tokens: groups that must match (AND of ORs), groups that must not."""

    groups: tuple[tuple[str, ...], ...]
    excluded: tuple[tuple[str, ...], ...] = ()


def term_query_full(parameter: SearchParameter, raw: str, modifier: str = "") -> TermQuery:
    """term_query, with what a value-quantity `ne` excludes; `modifier` "text" for code:text.

    Raises QuantityQueryError for a quantity that cannot be read.
    """
    if modifier == "text":
        words = _words(raw)
        return TermQuery(tuple((f"{_CODE_TEXT}={word[:PREFIX_MAX]}",) for word in words) or ((f"{_CODE_TEXT}=",),))
    if parameter.type == "quantity":
        unit, negated, tokens = quantity_query(raw)
        group = tuple(f"{parameter.code}={unit}@{token}" for token in tokens) or (f"{parameter.code}=",)
        return TermQuery((), (group,)) if negated else TermQuery((group,))
    return TermQuery(term_query(parameter, raw))


def term_query(parameter: SearchParameter, raw: str) -> tuple[tuple[str, ...], ...]:
    """The token groups (AND of ORs, as "<parameter>=<value>") one query value of a term parameter asks for."""
    if parameter.type == "string":
        words = _words(raw)
        return tuple((f"{parameter.code}={word[:PREFIX_MAX]}",) for word in words) or ((f"{parameter.code}=",),)
    alternatives = [part.strip() for part in raw.split(",") if part.strip()]
    term = next(t for t in TERMS if t.code == parameter.code)
    if term.reads == "reference":
        keys = [reference_key(a) if "/" in a else f"{term.target}/{a}" if term.target else None for a in alternatives]
        return (tuple(f"{parameter.code}={key}" for key in keys if key) or (f"{parameter.code}=",),)
    # A plain code has no system to search by: "system|final" asks for "final".
    values = [a.rpartition("|")[2] if term.reads == "code" else a for a in alternatives]
    return (tuple(f"{parameter.code}={value}" for value in values) or (f"{parameter.code}=",),)
