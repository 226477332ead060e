"""Parsing a submitted FHIR document: one resource, or a transaction or batch Bundle.

The whole document is checked before anything is returned, and every problem
found is reported at once in one InvalidFHIR: a client fixing a 300-entry Synthea
bundle should not have to resubmit it once per mistake. Only the limits that
protect the server (size, entry count) stop the parse at the first breach.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings

from healthledger.errors import DocumentTooLarge, InvalidFHIR, OutcomeIssue
from records.fhir.jsonio import DuplicateKey, loads_exact
from records.fhir.resource_types import RESOURCE_TYPES
from records.fhir.validation import (
    ResourceCheck,
    is_placeholder,
    model_issues,
    references_at,
    resource_check,
    shape_issues,
    shape_ok,
    unique_issues,
)

ACCEPTED_BUNDLE_TYPES = ("transaction", "batch", "collection")
# A collection (an export, the portal's own included) is a set of resources with no requests:
# each entry is stored as if POSTed; its ids are source ids, never server ids of another record.
REQUESTLESS_BUNDLE_TYPES = ("collection",)
ACCEPTED_METHODS = ("POST", "PUT")
HTTP_VERBS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")
CONDITIONAL_REQUEST_ELEMENTS = ("ifNoneMatch", "ifModifiedSince", "ifMatch", "ifNoneExist")
# Past this many problems the client learns nothing new; stop spending CPU on a hostile document.
MAX_ISSUES = 1000


@dataclass(frozen=True)
class Entry:
    index: int  # position in the Bundle (0 for a single resource)
    resource_type: str
    source_id: str | None  # resource.id as sent
    full_url: str | None  # entry.fullUrl as sent
    method: str  # "POST" or "PUT"
    resource: dict[str, Any]  # the parsed, validated JSON object; references not yet rewritten


@dataclass(frozen=True)
class Document:
    kind: str  # "resource" | "transaction" | "batch"
    entries: list[Entry]


def parse_document(payload: bytes) -> Document:
    """Parse and validate a FHIR R4 JSON document for writing.

    Raises DocumentTooLarge (413) over settings.FHIR_MAX_DOCUMENT_BYTES, and
    InvalidFHIR carrying every problem of the document otherwise.
    """
    limit = settings.FHIR_MAX_DOCUMENT_BYTES
    if len(payload) > limit:
        raise DocumentTooLarge(
            f"the document is larger than {limit} bytes",
            found=[OutcomeIssue(code="too-costly", diagnostics=f"the document is larger than {limit} bytes")],
        )
    if payload[:3] == b"\xef\xbb\xbf":
        payload = payload[3:]  # a UTF-8 byte order mark, as some Windows clients send: not part of the JSON
    try:
        data = loads_exact(payload)
    except orjson.JSONDecodeError as error:
        where = f" (line {error.lineno}, column {error.colno})"
        raise _rejected([OutcomeIssue(code="structure", diagnostics="the body is not valid JSON" + where)]) from None
    except DuplicateKey as error:
        raise _rejected([OutcomeIssue(code="structure", diagnostics=str(error))]) from None
    if type(data) is not dict:
        raise _rejected(
            [OutcomeIssue(code="structure", diagnostics="the document must be a JSON object: a resource or a Bundle")]
        )
    if data.get("resourceType") == "Bundle":
        return _bundle_parse(data)
    check = resource_check(data, prefix=None, base_depth=1, max_depth=settings.FHIR_MAX_DEPTH)
    issues = check.issues
    # A lone resource has no entries to point at: any placeholder reference is unresolvable.
    issues += _unresolved(data, str(data.get("resourceType")), check, set())
    if issues:
        raise _rejected(issues)
    return Document(kind="resource", entries=[_entry(0, data, None, "POST")])


def _rejected(issues: list[OutcomeIssue]) -> InvalidFHIR:
    count = len(issues)
    return InvalidFHIR(f"the FHIR document was rejected: {count} problem{'s' if count != 1 else ''}", found=issues)


def _entry(index: int, resource: dict[str, Any], full_url: str | None, method: str) -> Entry:
    source_id = resource.get("id")
    return Entry(
        index=index,
        resource_type=resource["resourceType"],
        source_id=source_id if type(source_id) is str else None,
        full_url=full_url,
        method=method,
        resource=resource,
    )


def _bundle_parse(bundle: dict[str, Any]) -> Document:
    max_depth = settings.FHIR_MAX_DEPTH
    issues: list[OutcomeIssue] = []
    kind = bundle.get("type")
    if kind is None:
        issues.append(_issue("required", "Bundle.type is missing", "Bundle.type"))
    elif kind not in ACCEPTED_BUNDLE_TYPES:
        issues.append(
            _issue("not-supported", "only transaction, batch and collection Bundles can be submitted", "Bundle.type")
        )
    raw_entries = bundle.get("entry", [])
    entries = raw_entries if type(raw_entries) is list else []
    if len(entries) > settings.FHIR_MAX_BUNDLE_ENTRIES:
        limit = settings.FHIR_MAX_BUNDLE_ENTRIES
        raise _rejected([_issue("too-costly", f"the Bundle holds more than {limit} entries", "Bundle.entry")])
    issues += _shell_issues(bundle, entries, max_depth)

    full_urls: dict[str, int] = {}
    for i, entry in enumerate(entries):
        full_url = entry.get("fullUrl") if type(entry) is dict else None
        if type(full_url) is str:
            if full_url in full_urls:
                issues.append(_issue("invalid", "two entries have the same fullUrl", f"Bundle.entry[{i}].fullUrl"))
            full_urls.setdefault(full_url, i)

    parsed: list[Entry] = []
    for i, entry in enumerate(entries):
        if len(issues) >= MAX_ISSUES:
            issues.append(OutcomeIssue(code="too-costly", diagnostics=f"more than {MAX_ISSUES} problems; stopped"))
            break
        if type(entry) is not dict:
            continue  # reported by the shell validation
        if kind in REQUESTLESS_BUNDLE_TYPES:
            method, request_issues = ("POST", []) if "request" not in entry else (None, [_request_in_collection(i)])
        else:
            method, request_issues = _request_issues(entry, i)
        issues += request_issues
        resource = entry.get("resource")
        where = f"Bundle.entry[{i}].resource"
        if resource is None:
            if method is not None:  # a GET or DELETE has no resource: its method was reported instead
                issues.append(_issue("required", "every transaction or batch entry needs a resource", where))
            continue
        check = resource_check(resource, prefix=where, base_depth=4, max_depth=max_depth)
        issues += check.issues
        if type(resource) is not dict or resource.get("resourceType") not in RESOURCE_TYPES:
            continue
        issues += _unresolved(resource, where, check, full_urls)
        issues += _url_issues(entry, resource, method, i)
        full_url = entry.get("fullUrl")
        parsed.append(_entry(i, resource, full_url if type(full_url) is str else None, method or "POST"))
    if issues:
        raise _rejected(unique_issues(issues))
    return Document(kind=str(kind), entries=parsed)


def _issue(code: str, diagnostics: str, where: str) -> OutcomeIssue:
    return OutcomeIssue(code=code, diagnostics=diagnostics, expression=(where,))


def _shell_issues(bundle: dict[str, Any], entries: list[Any], max_depth: int) -> list[OutcomeIssue]:
    """The Bundle around its resources: the same shape rules, and the R4B Bundle and BundleEntry models."""
    rest = {key: value for key, value in bundle.items() if key != "entry"}
    issues: list[OutcomeIssue] = []
    if not shape_ok(rest, 1, max_depth, []):
        issues += shape_issues(rest, "Bundle", 1, max_depth)
    raw_entries = bundle.get("entry")
    if raw_entries is not None and type(raw_entries) is not list:
        issues.append(_issue("structure", "Bundle.entry must be an array", "Bundle.entry"))
    elif raw_entries == []:
        issues.append(_issue("structure", "empty objects and arrays are not allowed", "Bundle.entry"))
    if not any(issue.code == "too-costly" for issue in issues):
        issues += model_issues(rest, "Bundle", "Bundle")
    for i, entry in enumerate(entries):
        if _plain_entry(entry):
            continue  # every part of it is checked by _request_issues; the model would only cost time
        where = f"Bundle.entry[{i}]"
        if type(entry) is not dict:
            issues.append(_issue("structure", "a Bundle entry must be a JSON object", where))
            continue
        part = {key: value for key, value in entry.items() if key != "resource"}
        if not entry:
            issues.append(_issue("structure", "empty objects and arrays are not allowed", where))
        elif part and not shape_ok(part, 3, max_depth, []):
            issues += shape_issues(part, where, 3, max_depth)
        elif part:
            issues += model_issues(part, "BundleEntry", where)
    return issues


_PLAIN_ENTRY_KEYS = frozenset(("fullUrl", "resource", "request"))
_PLAIN_REQUEST_KEYS = frozenset(("method", "url"))


# No whitespace and no control character: a value with either goes through the shape walk, which says where.
_NO_WHITESPACE = re.compile(r"[^\s\x00-\x1f]+")


def _plain_string(value: Any) -> bool:
    return type(value) is str and _NO_WHITESPACE.fullmatch(value) is not None


def _plain_entry(entry: Any) -> bool:
    """An entry of the usual form (fullUrl, resource, request{method, url}) that the BundleEntry model would pass."""
    if type(entry) is not dict or not entry or not entry.keys() <= _PLAIN_ENTRY_KEYS:
        return False
    if "fullUrl" in entry and not _plain_string(entry["fullUrl"]):
        return False
    request = entry.get("request")
    if request is None:
        return True
    return (
        type(request) is dict
        and bool(request)
        and request.keys() <= _PLAIN_REQUEST_KEYS
        and all(_plain_string(value) for value in request.values())
    )


def _request_in_collection(i: int) -> OutcomeIssue:
    return _issue("invalid", "a collection Bundle's entries carry no request", f"Bundle.entry[{i}].request")


def _request_issues(entry: dict[str, Any], i: int) -> tuple[str | None, list[OutcomeIssue]]:
    """The entry's method when it is one we accept, and what is wrong with its request."""
    request = entry.get("request")
    where = f"Bundle.entry[{i}].request"
    if request is None:
        return "POST", [_issue("required", "every transaction or batch entry needs a request", where)]
    if type(request) is not dict:
        return "POST", []  # reported by the shell validation
    issues = [
        _issue("not-supported", "conditional requests are not supported", f"{where}.{name}")
        for name in CONDITIONAL_REQUEST_ELEMENTS
        if name in request
    ]
    if "url" not in request:
        issues.append(_issue("required", "required element is missing", f"{where}.url"))
    method = request.get("method")
    if method in ACCEPTED_METHODS:
        return method, issues
    if method is None:
        issues.append(_issue("required", "required element is missing", f"{where}.method"))
        return "POST", issues
    if method in HTTP_VERBS:
        issues.append(_issue("not-supported", "only POST and PUT entries can be submitted", f"{where}.method"))
    elif type(method) is str:
        issues.append(_issue("value", "method must be one of GET|HEAD|POST|PUT|DELETE|PATCH", f"{where}.method"))
    return None, issues


def _url_issues(entry: dict[str, Any], resource: dict[str, Any], method: str | None, i: int) -> list[OutcomeIssue]:
    request = entry.get("request")
    url = request.get("url") if type(request) is dict else None
    if method is None or type(url) is not str:
        return []  # reported already: no request, a bad method, or a missing url
    where = f"Bundle.entry[{i}].request.url"
    resource_type = resource["resourceType"]
    if "?" in url:
        return [_issue("not-supported", "conditional creates and updates are not supported", where)]
    if method == "POST" and url.strip("/") != resource_type:
        return [_issue("invalid", "a POST entry's url must be the resource type", where)]
    if method == "PUT":
        if "id" not in resource:
            return [_issue("required", "a PUT entry's resource needs an id", f"Bundle.entry[{i}].resource.id")]
        if url.strip("/") != f"{resource_type}/{resource['id']}":
            return [_issue("invalid", "a PUT entry's url must be <resource type>/<resource id>", where)]
    return []


def _unresolved(
    resource: dict[str, Any], where: str, check: ResourceCheck, full_urls: Container[str]
) -> list[OutcomeIssue]:
    """Placeholder references (urn:uuid, urn:oid) that name no entry of this document."""
    if all(ref in full_urls for ref in check.placeholders):
        return []
    return [
        _issue("invalid", "the reference names no entry of this Bundle (no entry has it as fullUrl)", at)
        for ref, at in references_at(resource, where)
        if is_placeholder(ref) and ref not in full_urls
    ]
