"""Search of a record's type (GET, POST _search, the Patient compartment) and a clinician's patient list."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.http import HttpRequest, HttpResponse, QueryDict
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
from api.fhir.bundles import SearchUrl, base_url, searchset
from api.fhir.records.base import MAX_QUERY_LOGGED, RECORD_TYPES, _record_type
from api.fhir.records.includes import _included, _includes
from api.outcomes import BadRequest, NotAuthenticated, NotSupported
from consent import gate, pdp
from healthledger.errors import ResourceNotFound
from records.fhir.quantity import QuantityQueryError
from records.fhir.search_parameters import (
    SearchParameter,
    TermQuery,
    search_parameters,
    term_query_full,
)
from records.models import Patient

SORTS = frozenset({"date", "-date", "_lastUpdated", "-_lastUpdated", "_id", "-_id"})


@dataclass(frozen=True)
class Located:
    """The record a search names (by its Patient id) as the token's own statement found it, with the grants."""

    fhir_id: str
    target: gate.SearchTarget | None


@cache  # the registry is fixed for the process (search_parameters is cached too)
def supported_parameters(resource_type: str) -> frozenset[str]:
    """What a search of this type takes: its declared parameters (records.fhir.search_parameters), their
    modifiers (code:text), and _sort."""
    declared = search_parameters(resource_type).values()
    return frozenset(p.code for p in declared) | {f"{p.code}:{m}" for p in declared for m in p.modifiers} | {"_sort"}


def search_patient(
    query: QueryDict,
    context: TokenContext,
    resource_type: str,
    compartment: str | None = None,
    base: str = "",
    caller: gate.Caller | None = None,
    located: Located | None = None,
) -> tuple[Patient | None, gate.SearchTarget | None]:
    """The one record a search runs on (None when the named patient does not exist, or two names disagree),
    with the caller's grants on it when the gate could fetch them in the same statement (gate.search_target);
    `located`: what _search_by_token's statement found for the patient it named."""
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
    if located is not None and located.fhir_id == named:
        target = located.target
    else:
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
        if (p.index == "term" or modifier) and (name := f"{p.code}:{modifier}" if modifier else p.code) in query
        for raw in query.getlist(name)
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
    if not ignored:
        return asked  # nothing to leave out: read as asked (QueryDict.copy is a deep copy)
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
    located: Located | None = None,
    caller: gate.Caller | None = None,
) -> HttpResponse:
    """One search of a type, however it was asked (GET, POST _search, a Patient compartment); `caller`: the gate's
    Caller for this request and `context`, when already made."""
    _record_type(resource_type)
    scope_require(context, resource_type, "s")
    ignored = params.unknown_check(asked, supported_parameters(resource_type), strict=params.strict(request))
    query = _used(asked, ignored)
    paging = params.paging(query, SORTS)
    kept = params.elements(query, resource_type)  # checked before the search runs: a bad one is a 400, not a read
    includes = _includes(query, resource_type)
    criteria, satisfiable = _criteria(query, resource_type)
    caller = gate_caller(request, context) if caller is None else caller
    if _patient_list_asked(query, context, resource_type, compartment, base_url(request)):
        return _patient_list(request, caller, query, paging, criteria if satisfiable else None, ignored, url)
    patient, target = search_patient(query, context, resource_type, compartment, base_url(request), caller, located)
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


def _search_by_token(request: HttpRequest, resource_type: str) -> HttpResponse:
    """A GET search naming its patient: the bearer token checked inside the statement that finds the record and
    the caller's grants on it (gate.DeferredCaller), as a read's is, which saves every such search a round trip.

    The token's verdict still comes first (401 whether or not the record exists), then the purpose, then the
    search as any other (403 for scopes, 400 for parameters, the decision); the statement logs and opens
    nothing. Any other search authenticates first, as every endpoint does.
    """
    token = bearer_token(request)
    named = None
    if token is not None and len(token) <= MAX_TOKEN and resource_type in RECORD_TYPES:
        try:
            named = params.patient_param(request.GET, base_url(request))
        except BadRequest:
            named = None  # said after authentication, by _search
    if token is None or named is None:
        return _search(request, bearer_authenticate(request), resource_type, request.GET)
    resolved: list[tuple[TokenContext, gate.Caller]] = []

    def resolve(identity: object) -> gate.Caller:
        # None: the record was not found, and the token not looked at yet.
        context = token_context_from_identity(identity) if identity is not None else bearer_authenticate(request)
        if context is None:
            raise NotAuthenticated("the access token is unknown, expired or revoked", token_given=True)
        resolved.append((context, gate_caller(request, context)))
        return resolved[0][1]

    identity, actor_id = token_identity(token)
    caller = gate.DeferredCaller(identity=identity, actor_id=actor_id, resolve=resolve)
    target = gate.search_target(caller=caller, fhir_id=named, page=_whole_type_page(request.GET, resource_type))
    context, caller = resolved[0]
    return _search(request, context, resource_type, request.GET, located=Located(named, target), caller=caller)


# A query of these alone searches a whole type of the record it names (no criteria, storage order).
_WHOLE_TYPE = frozenset({"patient", "_count", "_offset"})


def _whole_type_page(query: QueryDict, resource_type: str) -> tuple[str, int, int] | None:
    """The page (type, limit, offset) a search of a whole type asks for, for gate.search_target to read with
    the record; None for any other search, or when the paging is bad (_search says so, after authentication).
    """
    if resource_type == "Patient" or not set(query) <= _WHOLE_TYPE:
        return None
    try:
        paging = params.paging(query, SORTS)
    except BadRequest:
        return None
    return resource_type, paging.count, paging.offset


@fhir_endpoint("GET", "HEAD", authenticated=False)
def resource_search(request: HttpRequest, context: None, resource_type: str) -> HttpResponse:
    response = _search_by_token(request, resource_type)
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
