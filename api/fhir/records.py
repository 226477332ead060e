"""Read, vread, search and create of record resources; the patient's transaction import.

Every read goes through the gate (consent.gate) and every write through consent.writes.
A resource the caller may not see answers exactly like one that does not exist: the same
404 and the same OperationOutcome bytes; a search of a patient the caller may not see
answers exactly like a search of a patient that does not exist: an empty searchset.

Patient resolution in searches: `patient=<id>` (or `subject=Patient/<id>`); a patient user
defaults to their own record; anyone else must name the patient (400 otherwise), so no
search ever spans records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction as db_transaction
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils.http import http_date, parse_http_date_safe
from django.utils.timezone import now

from accounts.models import Role
from api import selectors
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
from api.fhir.bundles import SearchUrl, base_url, paging_links, searchset
from api.outcomes import FHIR_CONTENT_TYPE, BadRequest, NotAuthenticated, NotSupported, ScopeDenied
from consent import gate, pdp, writes
from healthledger.errors import DocumentTooLarge, InvalidFHIR, ResourceNotFound
from records.fhir import canonical_json
from records.fhir.index import patient_references
from records.fhir.jsonio import DuplicateKey, loads_exact
from records.fhir.quantity import QuantityQueryError
from records.fhir.resource_types import RESOURCE_TYPES
from records.fhir.search_parameters import (
    SearchParameter,
    TermQuery,
    reference_elements,
    reference_key,
    search_parameters,
    term_query_full,
)
from records.fhir.validation import control_character_issues
from records.models import Patient, Resource

# Served by their own modules (api.fhir.consents, api.fhir.audit_events) or not resources of a record.
NOT_RECORD_TYPES = frozenset({"Consent", "AuditEvent", "Bundle", "CapabilityStatement", "OperationOutcome"})
RECORD_TYPES = frozenset(RESOURCE_TYPES - NOT_RECORD_TYPES)
SORTS = frozenset({"date", "-date", "_lastUpdated", "-_lastUpdated", "_id", "-_id"})
_JSON_BODIES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
MAX_QUERY_LOGGED = 2000


def _record_type(resource_type: str) -> str:
    if resource_type not in RECORD_TYPES:
        # Unknown types and types served elsewhere answer like a missing resource: nothing to see here.
        raise ResourceNotFound("resource not found")
    return resource_type


def _served(body: bytes, version: int, updated_at: datetime, status: int = 200) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type=FHIR_CONTENT_TYPE)
    response["ETag"] = f'W/"{version}"'
    response["Last-Modified"] = http_date(updated_at.timestamp())
    return response


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


def supported_parameters(resource_type: str) -> frozenset[str]:
    """What a search of this type takes: its declared parameters (records.fhir.search_parameters), their
    modifiers (code:text), and _sort."""
    declared = search_parameters(resource_type).values()
    return frozenset(p.code for p in declared) | {f"{p.code}:{m}" for p in declared for m in p.modifiers} | {"_sort"}


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


def search_patient(
    query: QueryDict,
    context: TokenContext,
    resource_type: str,
    compartment: str | None = None,
    base: str = "",
    caller: gate.Caller | None = None,
) -> tuple[Patient | None, gate.SearchTarget | None]:
    """The one record a search runs on (None when the named patient does not exist, or two names disagree),
    with the caller's grants on it when the gate could fetch them in the same statement (gate.search_target)."""
    named = params.patient_param(query, base)
    if compartment is not None:
        if named is not None and named != compartment:
            return None, None  # Patient/a/Observation?patient=b: both must hold, and no resource is in two records
        named = compartment
    if named is None and resource_type == "Patient":
        ids = params.id_list("_id", query.getlist("_id"))
        named = ids[0] if len(ids) == 1 else None
    if named is None and context.patient_context is not None:
        # A SMART launch: with no patient named, the search is of the patient in context.
        found = selectors.patients_by_ids(ids=[context.patient_context])
        if not found:
            return None, None
        named = found[0].fhir_id or str(found[0].pk)
    if named is None:
        if context.user.role == Role.PATIENT:
            return selectors.patient_of_user(user_id=context.user.pk), None
        raise BadRequest("name the patient: patient=<id> (or subject=Patient/<id>)")
    target = gate.search_target(caller=caller, fhir_id=named) if caller is not None else None
    if target is not None:
        return target.patient, target
    return selectors.patient_by_fhir_id(fhir_id=named), None


def _criteria(query: QueryDict, resource_type: str) -> tuple[gate.SearchCriteria, bool]:
    """The search's criteria, and whether they can match anything at all; each from its declared parameter."""
    declared = search_parameters(resource_type)
    by_index = {p.index: p.code for p in declared.values()}
    asked = [
        _term_query(p, raw, modifier)
        for p in declared.values()
        for modifier in ("", *p.modifiers)
        for raw in query.getlist(f"{p.code}:{modifier}" if modifier else p.code)
        if p.index == "term" or modifier
    ]
    date_name = by_index.get("date", "")
    days = params.day_range(date_name, query.getlist(date_name)) if date_name else params.DayRange()
    updated = params.instant_range("_lastUpdated", query.getlist("_lastUpdated"))
    code_name = by_index.get("code", "")
    criteria = gate.SearchCriteria(
        ids=params.id_list("_id", query.getlist("_id")),
        codes=params.token_groups(code_name, query.getlist(code_name)) if code_name else (),
        categories=params.token_groups("category", query.getlist("category")) if "category" in by_index else (),
        date_ge=days.ge,
        date_le=days.le,
        updated_ge=updated.ge,
        updated_lt=updated.lt,
        terms=tuple(group for found in asked for group in found.groups),
        terms_not=tuple(group for found in asked for group in found.excluded),
        date_not=tuple(days.excluded),
        updated_not=tuple(updated.excluded),
    )
    return criteria, not (days.empty or updated.empty)


def _term_query(parameter: SearchParameter, raw: str, modifier: str) -> TermQuery:
    """A term parameter's query value (a modifier's too), its problems as a 400 naming the parameter."""
    if parameter.type == "token" and not modifier:
        params.token_groups(parameter.code, [raw])  # system|code, |code or code: anything else is a 400
    try:
        return term_query_full(parameter, raw, modifier)
    except QuantityQueryError as error:
        raise params.bad(parameter.code, str(error)) from None


def _used(asked: QueryDict, ignored: tuple[str, ...]) -> QueryDict:
    query = asked.copy()
    for name in ignored:
        query.pop(name, None)
    return query


def _search(
    request: HttpRequest,
    context: TokenContext,
    resource_type: str,
    asked: QueryDict,
    url: SearchUrl | None = None,
    compartment: str | None = None,
) -> HttpResponse:
    """One search of a type, however it was asked (GET, POST _search, a Patient compartment)."""
    _record_type(resource_type)
    scope_require(context, resource_type, "s")
    ignored = params.unknown_check(asked, supported_parameters(resource_type), strict=params.strict(request))
    query = _used(asked, ignored)
    paging = params.paging(query, SORTS)
    kept = params.elements(query, resource_type)  # checked before the search runs: a bad one is a 400, not a read
    includes = _includes(query, resource_type)
    criteria, satisfiable = _criteria(query, resource_type)
    caller = gate_caller(request, context)
    if _patient_list_asked(query, context, resource_type, compartment, base_url(request)):
        return _patient_list(request, caller, query, paging, criteria if satisfiable else None, ignored, url)
    patient, target = search_patient(query, context, resource_type, compartment, base_url(request), caller)
    if patient is None or not satisfiable:
        return searchset(request, paging, 0, [], ignored, url)
    logged = asked.urlencode() if url is not None else request.META.get("QUERY_STRING", "")
    try:
        page = gate.resource_search_counted(
            caller=caller,
            patient=patient,
            resource_type=resource_type,
            criteria=criteria,
            sort=paging.sort,
            limit=paging.count,
            offset=paging.offset,
            query=(f"Patient/{compartment}/{resource_type}?" if compartment else "") + logged[:MAX_QUERY_LOGGED],
            # One corrupted resource fails only itself: the page carries the rest and says what was left out.
            partial=True,
            target=target,
        )
    except ResourceNotFound:
        # Denied: exactly what a search of a patient that does not exist returns.
        return searchset(request, paging, 0, [], ignored, url)
    refs = [ref.rsplit("/_history/", 1)[0] for ref in page.references]
    bodies = page.bodies
    included = _included(context, caller, patient, includes, refs, bodies, logged, target) if refs else []
    if kept is not None:
        bodies = [params.subset(body, kept) for body in bodies]
    elif paging.summary:
        bodies = [params.summarized(body, paging.summary, resource_type) for body in bodies]
    entries = list(zip(refs, bodies, strict=True))
    failed = [ref.rsplit("/_history/", 1)[0] for ref in page.failed]
    return searchset(request, paging, page.total or 0, entries, ignored, url, included, failed=failed)


def _patient_list_asked(
    query: QueryDict, context: TokenContext, resource_type: str, compartment: str | None, base: str
) -> bool:
    """`Patient?...` naming no one patient, by someone other than a patient: the caller's patient list."""
    if resource_type != "Patient" or compartment is not None or context.user.role == Role.PATIENT:
        return False
    return params.patient_param(query, base) is None and len(params.id_list("_id", query.getlist("_id"))) != 1


def _patient_list(
    request: HttpRequest,
    caller: gate.Caller,
    query: QueryDict,
    paging: params.Paging,
    criteria: gate.SearchCriteria | None,
    ignored: tuple[str, ...],
    url: SearchUrl | None,
) -> HttpResponse:
    """The Patient resources of every record the caller holds a live grant on, matching the criteria.

    Each record is searched through the gate like any search (decided, logged; a record whose
    grants do not cover Patient adds nothing), first to count, then for the page's own rows, so
    nothing beyond the page is decrypted. No record without a live grant is ever looked at.
    """
    if criteria is None:
        return searchset(request, paging, 0, [], ignored, url)
    ids = pdp.live_grant_patients(grantee_id=caller.actor.pk if caller.actor else 0, purpose=caller.purpose, at=now())
    logged = (url.query.urlencode() if url is not None else request.META.get("QUERY_STRING", ""))[:MAX_QUERY_LOGGED]

    def search(patient: Patient, limit: int, offset: int = 0) -> gate.SearchPage | None:
        try:
            return gate.resource_search_counted(
                caller=caller,
                patient=patient,
                resource_type="Patient",
                criteria=criteria,
                limit=limit,
                offset=offset,
                query=logged,
            )
        except ResourceNotFound:
            return None

    counted = [(p, page.total or 0) for p in selectors.patients_by_ids(ids=ids) if (page := search(p, 0)) is not None]
    entries: list[tuple[str, bytes]] = []
    skip, need = paging.offset, paging.count
    for patient, total in counted:
        if need <= 0:
            break
        if skip >= total:
            skip -= total
            continue
        page = search(patient, need, skip)
        if page is not None:
            entries += [
                (ref.rsplit("/_history/", 1)[0], body) for ref, body in zip(page.references, page.bodies, strict=True)
            ]
            need -= len(page.references)
        skip = 0
    return searchset(request, paging, sum(total for _, total in counted), entries, ignored, url)


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


@fhir_endpoint("GET", "HEAD")
def resource_search(request: HttpRequest, context: TokenContext, resource_type: str) -> HttpResponse:
    response = _search(request, context, resource_type, request.GET)
    if request.method == "HEAD":  # the search ran (and was logged) as a GET; its headers without the body
        length = len(response.content)
        response.content = b""
        response["Content-Length"] = str(length)
    return response


@fhir_endpoint("POST")
def resource_search_post(request: HttpRequest, context: TokenContext, resource_type: str) -> HttpResponse:
    """POST {type}/_search: the parameters in a form body (and the query), answered as the GET would be."""
    media = (request.content_type or "").lower()
    if request.body.strip() and media != "application/x-www-form-urlencoded":
        raise NotSupported("send the search parameters as application/x-www-form-urlencoded", status=415)
    asked = request.GET.copy()
    for name, values in request.POST.lists():
        asked.setlist(name, asked.getlist(name) + values)
    return _search(request, context, resource_type, asked, SearchUrl(path=f"/fhir/{resource_type}", query=asked))


@fhir_endpoint("GET")
def compartment_search(
    request: HttpRequest, context: TokenContext, patient_id: str, resource_type: str
) -> HttpResponse:
    """GET Patient/{id}/{type}: the type's search inside that patient's record (the Patient compartment)."""
    return _search(request, context, resource_type, request.GET, compartment=patient_id)


# --- Writes -------------------------------------------------------------------------------


def _body(request: HttpRequest) -> bytes:
    """The request body as JSON bytes: 415 for another media type, 413 past the limits, before reading it all."""
    media = (request.content_type or "").lower()
    if media not in _JSON_BODIES:
        raise NotSupported("send FHIR JSON (Content-Type: application/fhir+json)", status=415)
    return _body_bytes(request)


def _body_bytes(request: HttpRequest) -> bytes:
    """The request body, 413 past the limits (the declared length first, before reading it)."""
    limit = min(settings.FHIR_MAX_DOCUMENT_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise DocumentTooLarge(f"the document is larger than {limit} bytes")
    body = request.body
    if len(body) > limit:
        raise DocumentTooLarge(f"the document is larger than {limit} bytes")
    return body


def _json_object(body: bytes) -> dict[str, Any]:
    """400 for a body that is not a JSON object with a resourceType (422 is for FHIR that fails validation)."""
    try:
        data = loads_exact(body.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the body is not valid JSON", issue_code="structure") from exc
    except DuplicateKey as exc:
        raise BadRequest(f"the body is not valid FHIR JSON: {exc}", issue_code="structure") from exc
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise BadRequest("the body must be a FHIR resource: a JSON object with a resourceType", issue_code="structure")
    # Not FHIR JSON at all, like a property named twice: 400 here, before the resource is validated (422).
    control = list(control_character_issues(data, data["resourceType"]))
    if control:
        raise InvalidFHIR("the body is not valid FHIR JSON", found=control)
    return data


def _unprocessable(error: InvalidFHIR) -> InvalidFHIR:
    # Parsed, but not acceptable FHIR: 422. A too-large document keeps its 413.
    if isinstance(error, DocumentTooLarge):
        return error
    return InvalidFHIR(error.message, found=error.issues, status=422)


def _write(caller: gate.Caller, patient: Patient, body: bytes) -> writes.WriteResult:
    try:
        return writes.record_write(caller=caller, patient=patient, payload=body)
    except InvalidFHIR as error:
        raise _unprocessable(error) from None


def _create_target(context: TokenContext, resource: dict[str, Any]) -> Patient:
    refs = [ref for ref in patient_references(resource) if ref.startswith("Patient/")]
    if len(set(refs)) > 1:
        raise BadRequest("the resource refers to more than one patient")
    if refs:
        patient = selectors.patient_by_fhir_id(fhir_id=refs[0].removeprefix("Patient/"))
    elif context.user.role == Role.PATIENT:
        patient = selectors.patient_of_user(user_id=context.user.pk)
    else:
        raise BadRequest("the resource must refer to its patient (subject or patient: Patient/<id>)")
    if patient is None:
        raise ResourceNotFound("resource not found")
    return patient


def _representation(resource: dict[str, Any], reference: str, updated_at: datetime) -> bytes:
    """The stored resource as the store wrote it: the submitted content with the server's id and meta."""
    _, resource_id, _, version = reference.split("/")
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    meta["versionId"] = version
    meta["lastUpdated"] = updated_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return canonical_json({**resource, "id": resource_id, "meta": meta})


def _precondition(message: str) -> BadRequest:
    return BadRequest(message, status=412, issue_code="duplicate")


def _existing(caller: gate.Caller, patient: Patient, resource_type: str, condition: str) -> HttpResponse | None:
    """If-None-Exist: the one resource its search finds (200), 412 for several, None for none.

    The search is the type's own (same parameters, through the gate, logged); a caller who may
    not read the type cannot ask the question: 412, as for an ambiguous condition.
    """
    asked = QueryDict(condition.removeprefix("?").split("?", 1)[-1])
    params.unknown_check(asked, supported_parameters(resource_type) - {"_sort"}, strict=True)
    criteria, satisfiable = _criteria(asked, resource_type)
    if not satisfiable:
        return None
    try:
        page = gate.resource_search_counted(
            caller=caller,
            patient=patient,
            resource_type=resource_type,
            criteria=criteria,
            limit=2,
            query=f"If-None-Exist: {condition}"[:MAX_QUERY_LOGGED],
        )
    except ResourceNotFound:
        raise _precondition("If-None-Exist needs read access to the type in this record") from None
    if not page.references:
        return None
    if len(page.references) > 1:
        raise _precondition("If-None-Exist matches more than one resource")
    _, resource_id, _, version = page.references[0].split("/")
    located = selectors.resource_locate(resource_type=resource_type, resource_id=resource_id, version=int(version))
    if located is None:
        raise ResourceNotFound("resource not found")
    response = _served(page.bodies[0], located.version, located.updated_at)
    response["Location"] = f"/fhir/{page.references[0]}"
    return response


@fhir_endpoint("POST")
def resource_create(request: HttpRequest, context: TokenContext, resource_type: str) -> HttpResponse:
    """POST /fhir/<type>: one resource into the record of the patient it refers to (a write grant, or one's own)."""
    _record_type(resource_type)
    scope_require(context, resource_type, "c")
    if resource_type == "Patient":
        raise ScopeDenied("Patient resources are created by importing a record, not by create")
    body = _body(request)
    resource = _json_object(body)
    if resource["resourceType"] != resource_type:
        raise BadRequest(f"the body is a {resource['resourceType']}, the URL says {resource_type}")
    caller = gate_caller(request, context)
    patient = _create_target(context, resource)
    condition = request.headers.get("If-None-Exist")
    if condition is None:
        written = _write(caller, patient, body).ingest.patients[patient.pk]
    else:
        refused: Exception | None = None
        with db_transaction.atomic():
            # Locks the record: two conditional creates of the same thing queue here, and the
            # second finds the first's resource instead of making a duplicate.
            Patient.objects.select_for_update().filter(pk=patient.pk).first()
            try:
                existing = _existing(caller, patient, resource_type, condition)
                if existing is None:
                    written = _write(caller, patient, body).ingest.patients[patient.pk]
            except (BadRequest, ResourceNotFound) as error:
                # Raised after the block, so the deny entry the gate wrote inside it commits.
                refused = error
        if refused is not None:
            raise refused
        if existing is not None:
            return existing
    if written.created or written.updated:
        reference = (written.created or written.updated)[0]
        status = 201 if written.created else 200
    else:
        # The same content again: nothing new was stored; answer with the current version.
        current = selectors.resource_locate(resource_type=resource_type, resource_id=written.unchanged[0].split("/")[1])
        if current is None:
            raise ResourceNotFound("resource not found")
        reference, status = f"{written.unchanged[0]}/_history/{current.version}", 200
    _, resource_id, _, version = reference.split("/")
    located = selectors.resource_locate(resource_type=resource_type, resource_id=resource_id, version=int(version))
    if located is None:  # erased between the write and this lookup
        raise ResourceNotFound("resource not found")
    prefer = request.headers.get("Prefer", "")
    content = b"" if "return=minimal" in prefer else _representation(resource, reference, located.updated_at)
    response = _served(content, located.version, located.updated_at, status=status)
    response["Location"] = request.build_absolute_uri(f"/fhir/{reference}")
    return response


@fhir_endpoint("PUT")
def resource_update(request: HttpRequest, context: TokenContext, resource_type: str, resource_id: str) -> HttpResponse:
    """PUT /fhir/<type>/<id>: a new version of a resource this server issued, for its owner or a write grantee.

    `If-Match: W/"<version>"` makes it conditional: 412 when the current version is another. The
    version is compared only for a caller who may write here (anyone else gets the 404 of a missing
    resource, logged as a denied write), under a lock on the resource row, so two updates based on
    the same version cannot both pass. An id this server did not issue is 404: no update-as-create.
    """
    _record_type(resource_type)
    scope_require(context, resource_type, "u")
    if resource_type == "Patient":
        raise ScopeDenied("Patient resources are changed by importing a record, not by update")
    body = _body(request)
    resource = _json_object(body)
    if resource["resourceType"] != resource_type or resource.get("id") != resource_id:
        raise BadRequest(f"the body must be the {resource_type} with id {resource_id}")
    caller = gate_caller(request, context)
    located = selectors.resource_locate(resource_type=resource_type, resource_id=resource_id)
    if located is None:
        raise ResourceNotFound("resource not found")
    expected = request.headers.get("If-Match")
    entry = {"resource": resource, "request": {"method": "PUT", "url": f"{resource_type}/{resource_id}"}}
    bundle = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    with db_transaction.atomic():
        # Locks the resource row: of two updates from the same version, the second sees the first's.
        current = (
            Resource.objects.select_for_update()
            .filter(resource_type=resource_type, fhir_id=resource_id)
            .values_list("current_version", flat=True)
            .first()
        )
        decision = pdp.decide(
            actor=caller.actor,
            patient_id=located.patient.pk,
            patient_user_id=located.patient.user_id,
            action="write",
            resource_types=[resource_type],
            purpose=caller.purpose,
        )
        if decision.permit and expected is not None and expected.strip().removeprefix("W/") != f'"{current}"':
            raise BadRequest(f"If-Match: the current version is {current}", status=412, issue_code="conflict")
        try:
            written = _write(caller, located.patient, bundle).ingest.patients[located.patient.pk]
        except ResourceNotFound as error:
            denied: ResourceNotFound | None = error  # raised after the block, so the deny entry commits
        else:
            denied = None
    if denied is not None:
        raise denied
    changed = written.updated or written.created
    version = int(changed[0].rsplit("/", 1)[1]) if changed else located.version
    stored = selectors.resource_locate(resource_type=resource_type, resource_id=resource_id, version=version)
    if stored is None:
        raise ResourceNotFound("resource not found")
    reference = f"{resource_type}/{resource_id}/_history/{version}"
    prefer = request.headers.get("Prefer", "")
    content = b"" if "return=minimal" in prefer else _representation(resource, reference, stored.updated_at)
    response = _served(content, version, stored.updated_at)
    response["Content-Location"] = request.build_absolute_uri(f"/fhir/{reference}")
    return response


@fhir_endpoint("POST")
def transaction(request: HttpRequest, context: TokenContext) -> HttpResponse:
    """POST /fhir: a patient imports a transaction or batch Bundle into their own record, all or nothing."""
    body = _body(request)
    bundle = _json_object(body)
    if bundle["resourceType"] != "Bundle" or bundle.get("type") not in ("transaction", "batch"):
        raise BadRequest("POST to the base takes a transaction or batch Bundle")
    entries = bundle["entry"] if isinstance(bundle.get("entry"), list) else []
    resources = [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    types = {r["resourceType"] for r in resources if isinstance(r.get("resourceType"), str)}
    for resource_type in sorted(types):
        scope_require(context, resource_type, "c")
    if context.user.role != Role.PATIENT:
        raise ScopeDenied("a transaction imports a patient's own record; clinicians create single resources")
    caller = gate_caller(request, context)
    patient = selectors.patient_of_user(user_id=context.user.pk)
    if patient is None:
        raise ResourceNotFound("resource not found")
    result = _write(caller, patient, body)
    written = result.ingest.patients.get(patient.pk)
    outcome: list[dict[str, Any]] = []
    if written is not None:
        outcome += [{"response": {"status": "201 Created", "location": ref}} for ref in written.created]
        outcome += [{"response": {"status": "200 OK", "location": ref}} for ref in written.updated]
        outcome += [{"response": {"status": "200 OK", "location": ref}} for ref in written.unchanged]
    kind = "transaction-response" if bundle.get("type") == "transaction" else "batch-response"
    response: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if outcome:
        response["entry"] = outcome
    return HttpResponse(orjson.dumps(response), content_type=FHIR_CONTENT_TYPE)
