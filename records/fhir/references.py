"""Reference rewriting and the canonical bytes a resource is stored as."""

from __future__ import annotations

from typing import Any

from healthledger.errors import InvalidFHIR, OutcomeIssue
from records.fhir.jsonio import dumps_exact
from records.fhir.validation import is_placeholder, references_at


def rewrite_references(resource: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """Return `resource` with every Reference.reference found in `mapping` replaced by its value.

    References sit at any depth (subject, encounter, result[], extensions, contained
    resources), so the whole tree is walked. The input is never modified; unchanged
    subtrees are shared with it rather than copied, since the caller only serializes
    the result. A placeholder reference (urn:uuid, urn:oid) missing from `mapping`
    can never be resolved later, so it raises InvalidFHIR naming every such place.
    """
    rewritten = _rewrite(resource, mapping)
    if rewritten is _UNRESOLVED:
        where = str(resource.get("resourceType", "Resource"))
        raise InvalidFHIR(
            "a reference names no resource of this document",
            found=[
                OutcomeIssue(
                    code="invalid",
                    diagnostics="the reference names no entry of this document (no entry has it as fullUrl)",
                    expression=(at,),
                )
                for ref, at in references_at(resource, where)
                if ref not in mapping and is_placeholder(ref)
            ],
        )
    return rewritten  # type: ignore[no-any-return]


_UNRESOLVED: Any = object()


def _rewrite(node: Any, mapping: dict[str, str]) -> Any:
    """`node` itself when nothing under it changes, a shallow copy with the changes otherwise."""
    copy: Any = None
    if type(node) is dict:
        for key, value in node.items():
            kind = type(value)
            if kind is dict or kind is list:
                new = _rewrite(value, mapping)
                if new is _UNRESOLVED:
                    return _UNRESOLVED
                if new is value:
                    continue
            elif key == "reference" and kind is str:
                new = mapping.get(value)
                if new is None:
                    if is_placeholder(value):
                        return _UNRESOLVED
                    continue
            else:
                continue
            if copy is None:
                copy = dict(node)  # keeps the key order the client sent
            copy[key] = new
        return node if copy is None else copy
    for i, value in enumerate(node):
        kind = type(value)
        if kind is dict or kind is list:
            new = _rewrite(value, mapping)
            if new is _UNRESOLVED:
                return _UNRESOLVED
            if new is not value:
                if copy is None:
                    copy = list(node)
                copy[i] = new
    return node if copy is None else copy


def canonical_json(resource: dict[str, Any]) -> bytes:
    """The deterministic bytes stored (encrypted) and served unchanged: sorted keys, no whitespace.

    The same resource always gives the same bytes, whatever key order it arrived in,
    so a content hash over them detects a re-import that changed nothing. Decimals are written
    as they came (records.fhir.jsonio): 1.50 stays 1.50.
    """
    return dumps_exact(resource, sort_keys=True)
