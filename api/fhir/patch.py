"""PATCH /fhir/<type>/<id> with a JSON Patch (RFC 6902), for the owner and grantees who may write.

The order is what keeps it safe: the write is decided first (a caller who may not write gets
the 404 of a missing resource, logged as a denied write, and nothing is read); the current
version is then read through the gate (decided and logged like any read); the patch is applied
to that copy and the result validated as any write is (fhir.resources); the new version is
stored under a lock on the resource row, only if the row still holds the version that was read
and the one If-Match names (412 otherwise). A bad patch is a 400, a result that is not valid
FHIR a 422, each an OperationOutcome; in every failure nothing is written.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse

from api import selectors
from api.access import fhir_endpoint, gate_caller, scope_require
from api.auth import TokenContext
from api.fhir.records import RECORD_TYPES, _body_bytes
from api.fhir.records.write import _version_replace, _version_response
from api.outcomes import BadRequest, NotSupported, ScopeDenied
from consent import gate, writes
from consent.pdp import Decision
from healthledger.errors import ResourceNotFound
from records.fhir.json_patch import PatchError, patch_apply
from records.fhir.jsonio import DuplicateKey, loads_exact

JSON_PATCH = "application/json-patch+json"


def _operations(request: HttpRequest) -> list[Any]:
    media = (request.content_type or "").lower()
    if media != JSON_PATCH:
        raise NotSupported(f"send a JSON Patch (Content-Type: {JSON_PATCH})", status=415)
    try:
        operations = loads_exact(_body_bytes(request))
    except (orjson.JSONDecodeError, DuplicateKey) as exc:
        raise BadRequest("the body is not valid JSON", issue_code="structure") from exc
    if not isinstance(operations, list):
        raise BadRequest("a JSON Patch is an array of operations", issue_code="structure")
    return operations


def _version_tag(expected: str | None) -> str | None:
    return None if expected is None else expected.strip().removeprefix("W/")


@fhir_endpoint("PATCH")
def resource_patch(request: HttpRequest, context: TokenContext, resource_type: str, resource_id: str) -> HttpResponse:
    if resource_type not in RECORD_TYPES:
        raise ResourceNotFound("resource not found")
    scope_require(context, resource_type, "u")
    if resource_type == "Patient":
        raise ScopeDenied("Patient resources are changed by importing a record, not by patch")
    operations = _operations(request)
    caller = gate_caller(request, context)
    located = selectors.resource_locate(resource_type=resource_type, resource_id=resource_id)
    if located is None:
        raise ResourceNotFound("resource not found")
    writes.write_permitted(caller=caller, patient=located.patient, resource_type=resource_type)
    # Compared only for a caller who may write here (anyone else got the 404 above), before anything is read.
    expected = _version_tag(request.headers.get("If-Match"))
    if expected is not None and expected != f'"{located.version}"':
        raise BadRequest(f"If-Match: the current version is {located.version}", status=412, issue_code="conflict")
    read = gate.resource_read_by_id(caller=caller, resource_type=resource_type, resource_id=resource_id)
    try:
        patched = patch_apply(loads_exact(read.body), operations)
    except PatchError as error:
        raise BadRequest(f"JSON Patch: {error}", issue_code="processing") from None
    if (
        not isinstance(patched, dict)
        or patched.get("resourceType") != resource_type
        or patched.get("id") != resource_id
    ):
        raise BadRequest(f"JSON Patch: the result must stay the {resource_type} with id {resource_id}")

    def unchanged_since_read(current: int | None, decision: Decision) -> None:
        # Under the row lock: a write between the read above and this one makes this patch a 412.
        if current != read.version:
            raise BadRequest(f"the resource changed while it was patched (now version {current})", status=412,
                             issue_code="conflict")  # fmt: skip

    version = _version_replace(caller, replace(located, version=read.version), patched, check=unchanged_since_read)
    return _version_response(request, patched, version)
