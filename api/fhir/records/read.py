"""Read, vread and history of a record resource, through the gate; conditional reads (304)."""

from __future__ import annotations

from datetime import datetime

import orjson
from django.http import HttpRequest, HttpResponse
from django.utils.http import parse_http_date_safe

from api.access import fhir_endpoint, gate_caller, scope_require
from api.auth import (
    MAX_TOKEN,
    TokenContext,
    bearer_authenticate,
    bearer_token,
    token_context_from_identity,
    token_identity,
)
from api.fhir import params
from api.fhir.bundles import base_url, paging_links
from api.fhir.records.base import RECORD_TYPES, _record_type, _served
from api.outcomes import FHIR_CONTENT_TYPE, NotAuthenticated
from consent import gate
from healthledger.errors import ResourceNotFound


def _read(request: HttpRequest, resource_type: str, resource_id: str, version: int | None) -> HttpResponse:
    """Read (or vread) through the gate: one statement finds token, version, owner, keys and grants; one logs.

    The token is checked inside the statement that finds the resource (gate.DeferredCaller), and
    its verdict comes first all the same: a bad token gets 401 whether or not the resource exists,
    then scopes (403), then the decision (404 when denied or missing, alike).
    """
    token = bearer_token(request)
    if token is None or len(token) > MAX_TOKEN or resource_type not in RECORD_TYPES:
        bearer_authenticate(request)  # 401 before anything else, as on every endpoint
        raise ResourceNotFound("resource not found")  # a good token, but not a type of the record

    def resolve(identity: object) -> gate.Caller:
        # None: the token is unknown, or the resource was not found and the token not looked at yet.
        context = token_context_from_identity(identity) if identity is not None else bearer_authenticate(request)
        if context is None:
            raise NotAuthenticated("the access token is unknown, expired or revoked", token_given=True)
        scope_require(context, resource_type, "r")
        return gate_caller(request, context)

    identity, actor_id = token_identity(token)
    read = gate.resource_read_by_id(
        caller=gate.DeferredCaller(identity=identity, actor_id=actor_id, resolve=resolve),
        resource_type=resource_type,
        resource_id=resource_id,
        version=version,
    )
    # The ETag and time are the very version served.
    response = _served(read.body, read.version, read.created_at)
    if _not_modified(request, read.version, read.created_at):
        response.status_code, response.content = 304, b""
        del response["Content-Type"]
    elif request.method == "HEAD":
        length = len(read.body)
        response.content = b""
        response["Content-Length"] = str(length)
    return response


def _not_modified(request: HttpRequest, version: int, updated_at: datetime) -> bool:
    """If-None-Match naming this version (or *), else If-Modified-Since not before it: the client's copy is current.

    Decided after the gate's read, which is logged as any read is: a 304 confirms what the caller holds.
    """
    match = request.headers.get("If-None-Match")
    if match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in match.split(",")}
        return "*" in tags or f'"{version}"' in tags
    since = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
    return since is not None and int(updated_at.timestamp()) <= since


@fhir_endpoint("GET", "HEAD", authenticated=False)
def resource_read(request: HttpRequest, context: None, resource_type: str, resource_id: str) -> HttpResponse:
    return _read(request, resource_type, resource_id, None)


@fhir_endpoint("GET", "HEAD", authenticated=False)
def resource_vread(
    request: HttpRequest, context: None, resource_type: str, resource_id: str, version: str
) -> HttpResponse:
    if not version.isdigit() or not 0 < int(version) < 2**31:
        bearer_authenticate(request)
        raise ResourceNotFound("resource not found")
    return _read(request, resource_type, resource_id, int(version))


@fhir_endpoint("GET")
def resource_history(request: HttpRequest, context: TokenContext, resource_type: str, resource_id: str) -> HttpResponse:
    """GET {type}/{id}/_history: every version, newest first, each read through the gate (decided, logged).

    The current version is read first: a caller who may not see the resource gets the same 404
    as for one that does not exist, before any older version is looked at.
    """
    _record_type(resource_type)
    scope_require(context, resource_type, "r")
    paging = params.paging(request.GET)
    caller = gate_caller(request, context)
    current = gate.resource_read_by_id(caller=caller, resource_type=resource_type, resource_id=resource_id)
    versions = list(range(current.version, 0, -1))[paging.offset : paging.offset + paging.count]
    entries = []
    for version in versions:
        read = (
            current
            if version == current.version
            else gate.resource_read_by_id(
                caller=caller, resource_type=resource_type, resource_id=resource_id, version=version
            )
        )
        entries.append(_history_entry(request, resource_type, resource_id, read))
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "total": current.version,
        "link": paging_links(request, paging, current.version),
    }
    head = orjson.dumps(bundle)
    body = head[:-1] + b',"entry":[' + b",".join(entries) + b"]}" if entries else head
    return HttpResponse(body, content_type=FHIR_CONTENT_TYPE)


def _history_entry(request: HttpRequest, resource_type: str, resource_id: str, read: gate.ReadResult) -> bytes:
    created = read.version == 1
    around = {
        "request": {
            "method": "POST" if created else "PUT",
            "url": resource_type if created else f"{resource_type}/{resource_id}",
        },
        "response": {
            "status": "201 Created" if created else "200 OK",
            "etag": f'W/"{read.version}"',
            "lastModified": read.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        },
    }
    full_url = orjson.dumps(f"{base_url(request)}/{resource_type}/{resource_id}")
    return b'{"fullUrl":' + full_url + b',"resource":' + read.body + b"," + orjson.dumps(around)[1:]
