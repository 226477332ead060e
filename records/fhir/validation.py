"""Validation of one resource: the R4B model, plus what the model lets through.

Cost matters (this is the ingest path): R4B validation is ~99% of the time spent
here. Our own checks are one walk over plain dicts that tracks no paths; only when
it finds something does a second, path-tracking walk run to say where.

Diagnostics name elements and rules, never values: values may be PHI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from healthledger.errors import OutcomeIssue
from records.fhir.resource_types import RESOURCE_TYPES
from records.fhir.valuesets import binding_issues

MAX_ID_LENGTH = 64  # FHIR id: [A-Za-z0-9\-\.]{1,64}; R4B checks the characters but not the length

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# FHIR strings hold no character below U+0020 but tab, CR and LF (R4 datatypes: string); R4B does not check.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
CONTROL_CHARACTER = "a control character is not allowed in a FHIR string (tab, CR and LF are)"

# Literal references (R4 references.html#literal): Type/id, or an absolute URL ending in Type/id, either with
# an optional /_history/version; urn:uuid: and urn:oid: name a Bundle entry; #id a contained resource.
# No "." or ".." step anywhere: a reference names a resource, never a path to walk.
_STEP = r"(?!\.\.?(?:/|$))"
_ID = rf"{_STEP}[A-Za-z0-9\-.]{{1,64}}"


def _type_id(group: str) -> str:
    return rf"(?P<{group}>[A-Z][A-Za-z]{{1,63}})/{_ID}(?:/_history/{_ID})?"


_LITERAL_REFERENCE = re.compile(
    _type_id("relative")
    + rf"|https?://[A-Za-z0-9\-.]+(?::[0-9]{{1,5}})?(?:/{_STEP}[A-Za-z0-9\-._~:$]+)*?/"
    + _type_id("absolute")
    + r"|urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|urn:oid:[0-2](?:\.(?:0|[1-9][0-9]*))+"
    r"|#[A-Za-z0-9\-.]{0,64}"
)
NOT_A_LITERAL_REFERENCE = (
    "the reference is not a literal FHIR reference: Type/id, an absolute URL ending in Type/id, "
    "urn:uuid:, urn:oid: or #id"
)


def validate_resource(resource: dict[str, Any]) -> None:
    """Validate one resource with its `fhir.resources.R4B` model, and nothing else.

    Raises pydantic's ValidationError. This is exactly the work the ingest
    benchmark's validate-only baseline measures.
    """
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def is_placeholder(reference: str) -> bool:
    """A reference that names an entry of the submitted Bundle, never a stored resource."""
    return reference.startswith(("urn:uuid:", "urn:oid:"))


def is_conditional(reference: str) -> bool:
    """'Patient?identifier=...': a search the server would have to run; not supported here."""
    return "?" in reference and not reference.startswith(("http://", "https://", "urn:"))


def is_literal_reference(reference: str) -> bool:
    """A reference FHIR's literal grammar allows, naming a resource type this server knows."""
    found = _LITERAL_REFERENCE.fullmatch(reference)
    if found is None:
        return False
    resource_type = found["relative"] or found["absolute"]
    return resource_type is None or resource_type in RESOURCE_TYPES


def _reference_ok(reference: str) -> bool:
    return is_conditional(reference) or is_literal_reference(reference)


def control_character_issues(node: Any, where: str) -> Iterator[OutcomeIssue]:
    """Every string in the tree that holds a control character, with its expression (the slow path)."""
    if type(node) is dict:
        for key, value in node.items():
            inner = f"{where}.{key}" if _NAME.match(key) else where
            if type(value) is str and _CONTROL.search(value):
                yield _issue("value", CONTROL_CHARACTER, inner)
            elif type(value) is dict or type(value) is list:
                yield from control_character_issues(value, inner)
    elif type(node) is list:
        for i, value in enumerate(node):
            if type(value) is str and _CONTROL.search(value):
                yield _issue("value", CONTROL_CHARACTER, f"{where}[{i}]")
            elif type(value) is dict or type(value) is list:
                yield from control_character_issues(value, f"{where}[{i}]")


@dataclass
class ResourceCheck:
    """What checking one resource found: its problems, and the placeholder references it makes."""

    issues: list[OutcomeIssue] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)


def resource_check(resource: Any, *, prefix: str | None, base_depth: int, max_depth: int) -> ResourceCheck:
    """Check one resource completely; `prefix` is its expression (None: its own type, as for a lone resource).

    `base_depth` is the nesting depth of the resource object itself within the document.
    """
    result = ResourceCheck()
    if type(resource) is not dict:
        result.issues.append(_issue("structure", "a resource must be a JSON object", prefix or "Resource"))
        return result
    resource_type = resource.get("resourceType")
    type_issue = _resource_type_issue(resource_type, prefix)
    if type_issue is not None:
        result.issues.append(type_issue)
        return result
    assert isinstance(resource_type, str)
    where = prefix or resource_type

    # Fast walk without paths; it also collects the references that need a look (placeholders, conditionals).
    notable: list[str] = []
    if not shape_ok(resource, base_depth, max_depth, notable):
        result.issues.extend(shape_issues(resource, where, base_depth, max_depth))
        if any(issue.code == "too-costly" for issue in result.issues):
            return result  # never hand an over-deep tree to the model: its cost is what the limit prevents
    result.placeholders = [ref for ref in notable if is_placeholder(ref)]
    if len(result.placeholders) < len(notable):
        result.issues.extend(
            _issue("not-supported", "conditional references are not supported", at)
            for ref, at in references_at(resource, where)
            if is_conditional(ref)
        )

    resource_id = resource.get("id")
    if type(resource_id) is str and len(resource_id) > MAX_ID_LENGTH:
        result.issues.append(_issue("value", f"id is longer than {MAX_ID_LENGTH} characters", f"{where}.id"))

    contained = resource.get("contained")
    contained_ok = _contained_issues(contained, where, result.issues)
    # Bad contained resources crash the model, so it sees the rest of the resource without them.
    modelled = resource if contained_ok else {k: v for k, v in resource.items() if k != "contained"}
    result.issues.extend(model_issues(modelled, resource_type, where))
    result.issues.extend(_missing_required(resource, resource_type, where))
    result.issues.extend(binding_issues(resource, resource_type, where))
    if contained_ok and type(contained) is list:
        for i, inner in enumerate(contained):
            result.issues.extend(binding_issues(inner, inner["resourceType"], f"{where}.contained[{i}]"))
    result.issues = unique_issues(result.issues)
    return result


def _issue(code: str, diagnostics: str, where: str) -> OutcomeIssue:
    return OutcomeIssue(code=code, diagnostics=diagnostics, expression=(where,))


def _resource_type_issue(resource_type: Any, prefix: str | None) -> OutcomeIssue | None:
    where = f"{prefix or 'Resource'}.resourceType"
    if resource_type is None:
        return _issue("required", "resourceType is missing", where)
    if type(resource_type) is not str:
        return _issue("structure", "resourceType must be a string", where)
    if resource_type not in RESOURCE_TYPES:
        return _issue("not-supported", "resourceType is not a FHIR R4B resource type", where)
    return None


def shape_ok(node: Any, depth: int, max_depth: int, notable: list[str]) -> bool:
    """True when no object or array is empty, no property is null, nothing is nested deeper than allowed,
    no string holds a control character and every reference is a literal reference (or a conditional one).

    Appends every placeholder or conditional reference met on the way to `notable`.
    """
    if depth > max_depth:
        return False
    ok = True
    if type(node) is dict:
        if not node:
            return False
        for key, value in node.items():
            kind = type(value)
            if kind is dict or kind is list:
                ok = shape_ok(value, depth + 1, max_depth, notable) and ok
            elif kind is str:
                if _CONTROL.search(value):
                    ok = False
                elif key == "reference":
                    if not _reference_ok(value):
                        ok = False
                    elif is_placeholder(value) or is_conditional(value):
                        notable.append(value)
            elif value is None:
                ok = False
        return ok
    if not node:
        return False
    for value in node:
        kind = type(value)
        if kind is dict or kind is list:
            ok = shape_ok(value, depth + 1, max_depth, notable) and ok
        elif kind is str and _CONTROL.search(value):
            ok = False
    return ok


def shape_issues(node: Any, where: str, depth: int, max_depth: int) -> Iterator[OutcomeIssue]:
    """The slow twin of shape_ok: the same rules, with locations."""
    if depth > max_depth:
        yield _issue("too-costly", f"the document is nested deeper than {max_depth} levels", where)
        return
    if not node:
        # FHIR JSON has no empty objects or arrays: an element is present with content or absent.
        yield _issue("structure", "empty objects and arrays are not allowed", where)
        return
    if type(node) is dict:
        for key, value in node.items():
            inner = f"{where}.{key}" if _NAME.match(key) else where
            if type(value) is dict or type(value) is list:
                yield from shape_issues(value, inner, depth + 1, max_depth)
            elif value is None:
                yield _issue("structure", "null is not a value in FHIR JSON; leave the element out", inner)
            elif type(value) is str and _CONTROL.search(value):
                yield _issue("value", CONTROL_CHARACTER, inner)
            elif key == "reference" and type(value) is str and not _reference_ok(value):
                yield _issue("value", NOT_A_LITERAL_REFERENCE, inner)
        return
    for i, value in enumerate(node):
        if type(value) is dict or type(value) is list:
            yield from shape_issues(value, f"{where}[{i}]", depth + 1, max_depth)
        elif type(value) is str and _CONTROL.search(value):
            yield _issue("value", CONTROL_CHARACTER, f"{where}[{i}]")


def references_at(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every Reference.reference string in the tree, with its expression (the slow path: errors only)."""
    if type(node) is dict:
        for key, value in node.items():
            inner = f"{where}.{key}" if _NAME.match(key) else where
            if key == "reference" and type(value) is str:
                yield value, inner
            elif type(value) is dict or type(value) is list:
                yield from references_at(value, inner)
    elif type(node) is list:
        for i, value in enumerate(node):
            yield from references_at(value, f"{where}[{i}]")


def _contained_issues(contained: Any, where: str, issues: list[OutcomeIssue]) -> bool:
    """Contained resources must be typed resources that contain nothing themselves (FHIR dom-2).

    Checked before the model runs: R4B crashes (KeyError, TypeError) on a contained
    resource of an unknown or non-string type instead of reporting it.
    """
    if type(contained) is not list:
        return True  # absent, or a wrong shape the model reports
    ok = True
    for i, inner in enumerate(contained):
        at = f"{where}.contained[{i}]"
        if type(inner) is not dict:
            issues.append(_issue("structure", "a contained resource must be a JSON object", at))
            ok = False
            continue
        type_issue = _resource_type_issue(inner.get("resourceType"), at)
        if type_issue is not None:
            issues.append(type_issue)
            ok = False
        elif "contained" in inner:
            issues.append(_issue("invalid", "a contained resource cannot contain resources (dom-2)", at))
            ok = False
    return ok


def model_issues(resource: dict[str, Any], resource_type: str, where: str) -> list[OutcomeIssue]:
    try:
        get_fhir_model_class(resource_type).model_validate(resource)
    except ValidationError as error:
        return [_from_pydantic(detail, where) for detail in error.errors(include_url=False, include_input=False)]
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
        # The model failed outside its own error reporting; the input is still bad, not the server.
        return [_issue("structure", "the resource does not fit the R4B model", where)]
    return []


def _from_pydantic(detail: Any, where: str) -> OutcomeIssue:
    """One pydantic error as an OperationOutcome issue; its location becomes a FHIRPath-like expression."""
    kind = str(detail["type"])
    message = str(detail["msg"]).removeprefix("Value error, ")
    expression = where + "".join(
        f"[{step}]" if type(step) is int else f".{step}"
        for step in detail["loc"]
        if type(step) is int or _NAME.match(step)
    )
    if kind in ("missing", "model_field_validation.missing"):
        return _issue("required", "required element is missing", expression)
    if kind == "extra_forbidden":
        return _issue("structure", "unknown element: not defined for this type in FHIR R4B", expression)
    if message.startswith("Expect any of field value"):
        return _issue("required", "one of the choice elements is required: " + _after_list(message), expression)
    if message.startswith("Any of one field value"):
        return _issue(
            "structure", "only one of the choice elements may be present: " + _after_list(message), expression
        )
    if kind == "json_invalid":  # R4B tries a string given for a complex element as JSON text
        return _issue("structure", "expected a JSON object for this element", expression)
    if kind.endswith("_type") or kind == "is_instance_of":
        return _issue("structure", message, expression)
    return _issue("value", message, expression)


def _after_list(message: str) -> str:
    start, end = message.find("["), message.find("]")
    return message[start : end + 1] if 0 <= start < end else ""


@cache
def required_primitives(resource_type: str) -> tuple[str, ...]:
    """Top-level primitive elements of min cardinality 1 (Observation.status ...).

    R4B reports them missing only when every other field validated; a client
    fixing one problem at a time would meet them one request later.
    """
    fields = get_fhir_model_class(resource_type).model_fields.values()
    return tuple(
        f.alias
        for f in fields
        if f.alias and isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("element_required")
    )


def _missing_required(resource: dict[str, Any], resource_type: str, where: str) -> list[OutcomeIssue]:
    return [
        _issue("required", "required element is missing", f"{where}.{name}")
        for name in required_primitives(resource_type)
        # "_status" alone (an extension such as data-absent-reason) satisfies the cardinality.
        if name not in resource and f"_{name}" not in resource
    ]


def unique_issues(issues: list[OutcomeIssue]) -> list[OutcomeIssue]:
    seen: set[tuple[str, tuple[str, ...]]] = set()
    unique: list[OutcomeIssue] = []
    for issue in issues:
        key = (issue.code, issue.expression)
        if key not in seen:
            seen.add(key)
            unique.append(issue)
    return unique
