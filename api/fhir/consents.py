"""Consent: a grant as FHIR, readable by the patient whose record it covers and by its grantee.

Anyone else gets what a stranger gets for a grant that does not exist: the same 404 for
a read, an empty searchset for a search. A search lists the caller's grants (both sides),
narrowed by `patient`, `_id` and `status`, oldest first.
"""

from __future__ import annotations

import orjson
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.http import http_date

from api import selectors
from api.access import fhir_endpoint, scope_require
from api.auth import TokenContext
from api.fhir import params
from api.fhir.bundles import searchset
from api.outcomes import FHIR_CONTENT_TYPE
from consent.fhir import consent_id, grant_as_consent
from consent.models import Grant
from healthledger.errors import ResourceNotFound

SEARCH_PARAMETERS = frozenset({"patient", "_id", "status"})
# Consent.status as grant_as_consent renders it -> the grant statuses behind it.
_STATUS = {"proposed": ("pending",), "active": ("recorded",), "inactive": ("revoked",), "rejected": ("failed",)}


def _grant_id(resource_id: str) -> str:
    return "0x" + resource_id.lower()


@fhir_endpoint("GET")
def consent_read(request: HttpRequest, context: TokenContext, resource_id: str) -> HttpResponse:
    scope_require(context, "Consent", "r")
    grant = selectors.grants_visible_to(user_id=context.user.pk).filter(pk=_grant_id(resource_id)).first()
    if grant is None:
        raise ResourceNotFound("resource not found")
    response = HttpResponse(orjson.dumps(grant_as_consent(grant)), content_type=FHIR_CONTENT_TYPE)
    changed = grant.revoked_at or grant.recorded_at or grant.created_at
    response["Last-Modified"] = http_date(changed.timestamp())
    response["ETag"] = f'W/"{grant.status}-{int(changed.timestamp() * 1000)}"'
    return response


@fhir_endpoint("GET")
def consent_search(request: HttpRequest, context: TokenContext) -> HttpResponse:
    scope_require(context, "Consent", "s")
    ignored = params.unknown_check(request.GET, SEARCH_PARAMETERS, strict=params.strict(request))
    paging = params.paging(request.GET)
    grants = selectors.grants_visible_to(user_id=context.user.pk)
    named = params.patient_param(request.GET)
    if named is not None:
        patient = selectors.patient_by_fhir_id(fhir_id=named)
        grants = grants.filter(patient=patient) if patient is not None else grants.none()
    ids = params.id_list("_id", request.GET.getlist("_id"))
    if ids:
        grants = grants.filter(pk__in=[_grant_id(i) for i in ids])
    statuses = [s for raw in request.GET.getlist("status") for s in raw.split(",")]
    if statuses:
        unknown = sorted(set(statuses) - _STATUS.keys())
        if unknown:
            raise params.bad("status", f"unknown status {', '.join(unknown)}; use {', '.join(_STATUS)}")
        grants = _with_status(grants, statuses)
    total = grants.count()
    page = list(grants[paging.offset : paging.offset + paging.count]) if paging.count else []
    entries = [(f"Consent/{consent_id(g)}", orjson.dumps(grant_as_consent(g))) for g in page]
    return searchset(request, paging, total, entries, ignored)


def _with_status(grants: QuerySet[Grant], statuses: list[str]) -> QuerySet[Grant]:
    # "active"/"inactive" depend on the window as well as the stored status: filter on both.
    now = timezone.now()
    wanted = Q(pk__in=[])
    for status in statuses:
        if status == "active":
            wanted |= Q(status="recorded", not_after__gt=now)
        elif status == "inactive":
            wanted |= Q(status="revoked") | Q(status="recorded", not_after__lte=now)
        else:
            wanted |= Q(status__in=_STATUS[status])
    return grants.filter(wanted)
