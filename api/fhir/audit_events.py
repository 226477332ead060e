"""AuditEvent: the access log about a patient's own data, as FHIR, for that patient only.

Each entry renders as an R4B AuditEvent: what was done (type, subtype, action), when,
the decision (outcome), why (purposeOfEvent, and a break-glass reason), who (agent) and
on what (entity: the patient, the resource versions, the query, the grant). Anyone but the
patient gets what a stranger gets: a 404 for a read, an empty searchset for a search.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from accounts.models import Role, User
from api import selectors
from api.access import fhir_endpoint, scope_require
from api.auth import TokenContext
from api.fhir import params
from api.fhir.bundles import searchset
from api.outcomes import FHIR_CONTENT_TYPE
from audit.models import AccessLogEntry, Outcome
from consent.fhir import GRANT_ID_SYSTEM, USER_ID_SYSTEM
from consent.gate import access_log_text
from consent.purposes import PURPOSE_SYSTEM
from healthledger.errors import ResourceNotFound

SEARCH_PARAMETERS = frozenset({"patient", "date", "outcome", "subtype", "_sort"})
SORTS = frozenset({"date", "-date"})
JOB_ID_SYSTEM = "urn:healthledger:job"
ACTION_SYSTEM = "urn:healthledger:access-log-action"
_OUTCOME: dict[str, str] = {Outcome.PERMIT: "0", Outcome.DENY: "4"}
_OUTCOME_DESC: dict[str, str] = {Outcome.PERMIT: "permitted", Outcome.DENY: "denied"}
_REST = {"records.read": "read", "records.search": "search-type", "records.write": "create"}
_CRUDE = {
    "records.read": "R",
    "records.search": "E",
    "records.export": "R",
    "records.export.download": "R",
    "records.write": "C",
    "records.erase": "D",
}
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _agent(entry: AccessLogEntry, names: dict[int, str]) -> dict[str, Any]:
    kind, _, ident = entry.actor.partition(":")
    who: dict[str, Any] = {"display": entry.actor}
    if kind == "user" and ident.isdigit():
        who = {"identifier": {"system": USER_ID_SYSTEM, "value": ident}, "display": names.get(int(ident), entry.actor)}
    elif kind == "job":
        who = {"identifier": {"system": JOB_ID_SYSTEM, "value": ident}, "display": f"diagnostic job {ident}"}
    agent: dict[str, Any] = {"who": who, "requestor": True}
    if entry.purpose:
        agent["purposeOfUse"] = [{"coding": [{"system": PURPOSE_SYSTEM, "code": entry.purpose}]}]
    if entry.grant_ref:
        agent["policy"] = [f"{GRANT_ID_SYSTEM}:{entry.grant_ref}"]
    return agent


def _entities(entry: AccessLogEntry, patient_fhir_id: str) -> list[dict[str, Any]]:
    patient: dict[str, Any] = {
        "what": {"reference": f"Patient/{patient_fhir_id}"},
        "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
    }
    if entry.break_glass and entry.reason:
        reason = access_log_text(patient_id=entry.patient_ref, text=entry.reason)
        patient["detail"] = [{"type": "break-glass-reason", "valueString": reason}]
    found = [patient]
    found += [
        {"what": {"reference": ref}, "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"}}
        for ref in entry.resource_ids or []
        if isinstance(ref, str) and ref
    ]
    if entry.query:
        found.append(
            {
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
                "query": base64.b64encode(
                    access_log_text(patient_id=entry.patient_ref, text=entry.query).encode()
                ).decode("ascii"),
            }
        )
    if entry.grant_ref:
        found.append(
            {
                "what": {"identifier": {"system": GRANT_ID_SYSTEM, "value": entry.grant_ref}},
                "type": {"system": "http://hl7.org/fhir/resource-types", "code": "Consent", "display": "Consent"},
            }
        )
    return found


def entry_as_audit_event(entry: AccessLogEntry, *, patient_fhir_id: str, names: dict[int, str]) -> dict[str, Any]:
    """One access-log entry as an R4B AuditEvent; `names` maps user ids to the usernames shown as agents."""
    subtype = [{"system": ACTION_SYSTEM, "code": entry.action}]
    if entry.action in _REST:
        subtype.insert(0, {"system": "http://hl7.org/fhir/restful-interaction", "code": _REST[entry.action]})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(entry.pk),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": subtype,
        "action": _CRUDE.get(entry.action, "E"),
        "recorded": _instant(entry.at),
        "outcome": _OUTCOME.get(entry.outcome, "4"),
        "outcomeDesc": _OUTCOME_DESC.get(entry.outcome, entry.outcome),
        "agent": [_agent(entry, names)],
        "source": {"observer": {"display": "HealthLedger access log"}},
        "entity": _entities(entry, patient_fhir_id),
    }
    if entry.purpose:
        event["purposeOfEvent"] = [{"coding": [{"system": PURPOSE_SYSTEM, "code": entry.purpose}]}]
    return event


def _names(entries: list[AccessLogEntry]) -> dict[int, str]:
    ids = {int(e.actor[5:]) for e in entries if e.actor.startswith("user:") and e.actor[5:].isdigit()}
    return dict(User.objects.filter(pk__in=ids).values_list("pk", "username")) if ids else {}


def _patient_fhir_id(context: TokenContext) -> tuple[str, QuerySet[AccessLogEntry]]:
    patient = selectors.patient_of_user(user_id=context.user.pk) if context.user.role == Role.PATIENT else None
    if patient is None:
        return "", AccessLogEntry.objects.none()
    return patient.fhir_id or str(patient.pk), selectors.access_log_for_patient_user(user_id=context.user.pk)


@fhir_endpoint("GET")
def audit_event_read(request: HttpRequest, context: TokenContext, resource_id: str) -> HttpResponse:
    scope_require(context, "AuditEvent", "r")
    fhir_id, entries = _patient_fhir_id(context)
    entry = entries.filter(pk=int(resource_id)).first() if resource_id.isdigit() and len(resource_id) < 19 else None
    if entry is None:
        raise ResourceNotFound("resource not found")
    event = entry_as_audit_event(entry, patient_fhir_id=fhir_id, names=_names([entry]))
    return HttpResponse(orjson.dumps(event), content_type=FHIR_CONTENT_TYPE)


@fhir_endpoint("GET")
def audit_event_search(request: HttpRequest, context: TokenContext) -> HttpResponse:
    scope_require(context, "AuditEvent", "s")
    ignored = params.unknown_check(request.GET, SEARCH_PARAMETERS, strict=params.strict(request))
    paging = params.paging(request.GET, SORTS)
    days = params.day_range("date", request.GET.getlist("date"))
    fhir_id, entries = _patient_fhir_id(context)
    named = params.patient_param(request.GET)
    if named is not None and named != fhir_id:
        entries = AccessLogEntry.objects.none()  # only one's own record: anyone else's looks like nobody's
    instants = days.instants()
    if instants.empty:
        entries = AccessLogEntry.objects.none()
    if instants.ge is not None:
        entries = entries.filter(at__gte=instants.ge)
    if instants.lt is not None:
        entries = entries.filter(at__lt=instants.lt)
    for ge, lt in instants.excluded:  # ne
        entries = entries.exclude(at__gte=ge, at__lt=lt) if lt is not None else entries.exclude(at__gte=ge)
    outcomes = [o for raw in request.GET.getlist("outcome") for o in raw.split(",")]
    if outcomes:
        by_code = {code: outcome for outcome, code in _OUTCOME.items()}
        if set(outcomes) - by_code.keys():
            raise params.bad("outcome", "0 (permitted) or 4 (denied)")
        entries = entries.filter(outcome__in=[by_code[o] for o in outcomes])
    subtypes = [s.rpartition("|")[2] for raw in request.GET.getlist("subtype") for s in raw.split(",")]
    if subtypes:
        entries = entries.filter(action__in=subtypes)
    if paging.sort == "-date":
        entries = entries.order_by("-at", "-id")
    total = entries.count()
    page = list(entries[paging.offset : paging.offset + paging.count]) if paging.count else []
    names = _names(page)
    rendered = [
        (f"AuditEvent/{e.pk}", orjson.dumps(entry_as_audit_event(e, patient_fhir_id=fhir_id, names=names)))
        for e in page
    ]
    return searchset(request, paging, total, rendered, ignored)
