"""FHIR Bulk Data export (IG v2) over HTTP, and the Group it exports.

    GET|POST /fhir/$export                      a backend service (client credentials, system/ scopes): every
                                                record whose live grants cover the client's owner
    GET|POST /fhir/Patient/$export              every record the caller may export (a patient: their own)
    GET|POST /fhir/Group/{id}/$export           the caller's Group: the patients whose live grants cover them
    GET      /fhir/Group, /fhir/Group/{id}      that Group (members are Patient references)
    GET      /fhir/bulk-status/{export}         202 + Retry-After + X-Progress while it runs; 200 + manifest
    DELETE   /fhir/bulk-status/{export}         cancel (202); its files are deleted
    GET      /fhir/bulk-files/{export}/{Type}.ndjson

Kick-off needs `Prefer: respond-async` and answers 202 with Content-Location. Parameters: `_type`,
`_since` (an instant), `_typeFilter` (`Type?params` of the type's own search parameters, several ORed),
`_outputFormat` (ndjson only), in the query or a `Parameters` body. The status, the cancellation and
the files answer only the user and client that asked (a bearer token of the same client for the same
user); anyone else gets the 404 of a missing export. The export itself runs in Celery
(api.bulk_export): every resource is read through the gate and logged, the files are sealed at rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.urls import re_path
from django.utils import timezone
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt

from accounts.models import Role, User
from api import bulk_export
from api.access import fhir_endpoint, gate_caller
from api.auth import TokenContext, bearer_authenticate
from api.bulk_models import OPEN_STATUSES, ExportJob, ExportStatus
from api.fhir import everything
from api.fhir.bundles import base_url
from api.fhir.params import bad
from api.fhir.records import RECORD_TYPES
from api.outcomes import (
    FHIR_CONTENT_TYPE,
    BadRequest,
    ScopeDenied,
    exception_response,
    not_found_response,
    outcome_response,
)
from consent.purposes import Purpose
from healthledger.errors import OutcomeIssue, ResourceNotFound
from records.fhir.jsonio import DuplicateKey, loads_exact
from records.models import Patient

NDJSON = "application/fhir+ndjson"
_OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
_KICKOFF_PARAMETERS = frozenset({"_type", "_since", "_typeFilter", "_outputFormat"})
_IGNORED = frozenset({"_format", "_pretty"})
_PARAMETER_VALUES = ("valueString", "valueInstant", "valueDateTime", "valueCode", "valueUri")
RETRY_AFTER_SECONDS = 2
THROTTLED_RETRY_SECONDS = 30
ERROR_FILE = "OperationOutcome"


def group_id(user: User) -> str:
    """The id of the Group this server exposes for a user: the patients whose live grants cover them."""
    return f"granted-{user.pk}"


def _kickoff_parameters(request: HttpRequest) -> QueryDict:
    """The kick-off's parameters from the query and, on POST, a Parameters body; 400 for anything else."""
    asked = request.GET.copy()
    if request.method == "POST" and request.body.strip():
        try:
            data = loads_exact(request.body.removeprefix(b"\xef\xbb\xbf"))
        except (orjson.JSONDecodeError, DuplicateKey) as exc:
            raise BadRequest("the body is not valid FHIR JSON", issue_code="structure") from exc
        if not isinstance(data, dict) or data.get("resourceType") != "Parameters":
            raise BadRequest("the body of $export must be a Parameters resource", issue_code="structure")
        for item in data.get("parameter") or []:
            name = item.get("name") if isinstance(item, dict) else None
            values = [item[k] for k in _PARAMETER_VALUES if isinstance(item, dict) and k in item]
            if not isinstance(name, str) or len(values) != 1 or not isinstance(values[0], str):
                raise BadRequest("each Parameters.parameter needs a name and one string value", issue_code="structure")
            asked.appendlist(name, values[0])
    unknown = sorted(set(asked) - _KICKOFF_PARAMETERS - _IGNORED)
    if unknown:
        raise BadRequest(f"unsupported $export parameter(s): {', '.join(unknown)}", issue_code="not-supported")
    return asked


def _since(values: list[str]) -> datetime | None:
    if not values:
        return None
    if len(values) > 1:
        raise bad("_since", "give it once")
    try:
        since = datetime.fromisoformat(values[0].replace("Z", "+00:00"))
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise bad("_since", "must be a FHIR instant with a time zone, e.g. 2024-01-01T00:00:00Z")
    return since


def _types(context: TokenContext, values: list[str]) -> list[str]:
    """The exported types: `_type` (each a type of the record the token may read), else every one it may read."""
    asked = [t.strip() for value in values for t in value.split(",") if t.strip()]
    for resource_type in asked:
        if resource_type not in RECORD_TYPES:
            raise bad("_type", f"{resource_type[:64]!r} is not a resource type this server exports")
        if not context.scopes.allows(resource_type, "r"):
            raise ScopeDenied(f"the access token's scopes do not allow read on {resource_type}")
    types = sorted(set(asked)) if asked else sorted(t for t in RECORD_TYPES if context.scopes.allows(t, "r"))
    if not types:
        raise ScopeDenied("the access token's scopes allow reading no resource type")
    return types


def _kickoff(request: HttpRequest, context: TokenContext, kind: str) -> HttpResponse:
    prefer = request.headers.get("Prefer", "")
    if "respond-async" not in prefer.replace(" ", "").split(","):
        raise BadRequest("a bulk export runs asynchronously: send Prefer: respond-async")
    asked = _kickoff_parameters(request)
    formats = asked.getlist("_outputFormat")
    if formats and (len(formats) > 1 or formats[0] not in _OUTPUT_FORMATS):
        raise bad("_outputFormat", f"supported: {NDJSON}")
    types = _types(context, asked.getlist("_type"))
    since = _since(asked.getlist("_since"))
    filters = [bulk_export.type_filter_parse(raw, types) for value in asked.getlist("_typeFilter") for raw in [value]]
    caller = gate_caller(request, context)
    if caller.purpose == Purpose.ETREAT:
        raise ScopeDenied("break-glass opens single records, not bulk exports")
    if bulk_export.export_open_count(requester=context.user) >= bulk_export.EXPORT_OPEN_MAX:
        issue = OutcomeIssue(
            code="throttled",
            diagnostics=f"at most {bulk_export.EXPORT_OPEN_MAX} exports may run at a time; retry when one completes",
        )
        return outcome_response(429, [issue], {"Retry-After": str(THROTTLED_RETRY_SECONDS)})
    job = bulk_export.export_accept(
        requester=context.user,
        application_id=context.application_id,
        purpose=caller.purpose,
        patient_context=caller.patient_context,
        kind=kind,
        request_url=request.build_absolute_uri(),
        resource_types=types,
        since=since,
        type_filters=filters,
    )
    response = HttpResponse(status=202)
    response["Content-Location"] = f"{base_url(request)}/bulk-status/{job.pk}"
    return response


@fhir_endpoint("GET", "POST")
def system_export(request: HttpRequest, context: TokenContext) -> HttpResponse:
    """$export at the base: for a backend service, every record its owner's live grants cover (the same pipeline)."""
    if not context.client_credentials or not any(s.context == "system" for s in context.scopes.resources):
        raise ScopeDenied("$export at the base is for backend services: a client-credentials token with system/ scopes")
    return _kickoff(request, context, "system")


@fhir_endpoint("GET", "POST")
def patient_export(request: HttpRequest, context: TokenContext) -> HttpResponse:
    """Patient/$export: every record the caller may export (their own, or those their live grants cover)."""
    return _kickoff(request, context, "patient")


@fhir_endpoint("GET", "POST")
def group_export(request: HttpRequest, context: TokenContext, group: str) -> HttpResponse:
    """Group/{id}/$export: the caller's own Group; any other id is a Group that does not exist."""
    _own_group(context, group)
    return _kickoff(request, context, "group")


def _own_group(context: TokenContext, group: str) -> None:
    if context.user.role == Role.PATIENT or group != group_id(context.user):
        raise ResourceNotFound("resource not found")


def _group(request: HttpRequest, context: TokenContext) -> dict[str, Any]:
    caller = gate_caller(request, context)
    members = bulk_export.export_cohort(
        requester=context.user, purpose=caller.purpose, at=timezone.now(), patient_context=caller.patient_context
    )
    group: dict[str, Any] = {
        "resourceType": "Group",
        "id": group_id(context.user),
        "type": "person",
        "actual": True,
        "name": "Patients whose live grants cover me",
        "quantity": len(members),
    }
    if members:
        group["member"] = [{"entity": {"reference": f"Patient/{p.fhir_id or p.pk}"}} for p in members]
    return group


@fhir_endpoint("GET")
def group_read(request: HttpRequest, context: TokenContext, group: str) -> HttpResponse:
    _own_group(context, group)
    return HttpResponse(orjson.dumps(_group(request, context)), content_type=FHIR_CONTENT_TYPE)


@fhir_endpoint("GET")
def group_search(request: HttpRequest, context: TokenContext) -> HttpResponse:
    """GET Group: the caller's one Group (none for a patient), as a searchset."""
    entries = []
    if context.user.role != Role.PATIENT:
        group = _group(request, context)
        entries = [
            {"fullUrl": f"{base_url(request)}/Group/{group['id']}", "resource": group, "search": {"mode": "match"}}
        ]
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    return HttpResponse(orjson.dumps(bundle), content_type=FHIR_CONTENT_TYPE)


def _own_export(context: TokenContext, export_id: str) -> ExportJob:
    """The caller's export (same user, same client), neither cancelled nor expired; 404 for anything else."""
    try:
        pk = uuid.UUID(export_id)
    except ValueError:
        raise ResourceNotFound("resource not found") from None
    job = ExportJob.objects.filter(pk=pk, requester_id=context.user.pk, application_id=context.application_id).first()
    if job is None or job.status == ExportStatus.CANCELLED:
        raise ResourceNotFound("resource not found")
    if job.expires_at is not None and job.expires_at <= timezone.now():
        raise ResourceNotFound("resource not found")
    return job


def _progress(job: ExportJob) -> str:
    total = len(job.patient_ids)
    return f"{job.patients_done} of {total} record(s), {job.resources} resource(s) exported"


def _manifest(request: HttpRequest, job: ExportJob) -> dict[str, Any]:
    files = f"{base_url(request)}/bulk-files/{job.pk}"
    manifest: dict[str, Any] = {
        "transactionTime": job.transaction_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [
            {"type": f.resource_type, "url": f"{files}/{f.resource_type}.ndjson", "count": f.count}
            for f in bulk_export.export_outputs(job=job)
        ],
        "error": [],
    }
    if job.stopped:
        manifest["error"] = [{"type": ERROR_FILE, "url": f"{files}/{ERROR_FILE}.ndjson", "count": len(job.stopped)}]
    return manifest


@fhir_endpoint("GET", "DELETE")
def export_status(request: HttpRequest, context: TokenContext, export_id: str) -> HttpResponse:
    """Poll (GET) or cancel (DELETE) an export."""
    job = _own_export(context, export_id)
    if request.method == "DELETE":
        bulk_export.export_cancel(job=job)
        return HttpResponse(status=202)
    if job.status in OPEN_STATUSES:
        response = HttpResponse(status=202)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        response["X-Progress"] = _progress(job)
        return response
    if job.status == ExportStatus.FAILED:
        issue = OutcomeIssue(code="exception", diagnostics=job.error or "the export failed")
        return HttpResponse(
            orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue.as_fhir()]}),
            status=500,
            content_type=FHIR_CONTENT_TYPE,
        )
    response = HttpResponse(orjson.dumps(_manifest(request, job)), content_type="application/json")
    if job.expires_at is not None:
        response["Expires"] = http_date(job.expires_at.timestamp())
    return response


def _error_lines(job: ExportJob) -> Iterator[bytes]:
    ids = dict(Patient.objects.filter(pk__in=job.stopped).values_list("pk", "fhir_id"))
    for patient_id in job.stopped:
        fhir_id = ids.get(uuid.UUID(patient_id)) or patient_id
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "forbidden",
                    "diagnostics": f"the export of Patient/{fhir_id} stopped: access to this record ended during it",
                    "expression": [f"Patient/{fhir_id}"],
                }
            ],
        }
        yield orjson.dumps(outcome) + b"\n"


@csrf_exempt  # bearer tokens only
def export_file(request: HttpRequest, export_id: str, file_type: str) -> HttpResponse | StreamingHttpResponse:
    """One ndjson file of a completed export, streamed a sealed segment at a time, for its requester only.

    Not a fhir_endpoint: a Bulk Data client asks for it with `Accept: application/fhir+ndjson`.
    """
    try:
        if request.method != "GET":
            return HttpResponse(status=405, headers={"Allow": "GET"})
        context = bearer_authenticate(request)
        job = _own_export(context, export_id)
        if job.status != ExportStatus.COMPLETED:
            raise ResourceNotFound("resource not found")
        if file_type == ERROR_FILE:
            lines: Iterator[bytes] = _error_lines(job)
        elif file_type in job.resource_types:
            lines = bulk_export.export_file_lines(job=job, resource_type=file_type)
        else:
            raise ResourceNotFound("resource not found")
    except ResourceNotFound:
        return not_found_response()
    except Exception as exc:
        response = exception_response(exc)
        if response is None:
            raise
        return response
    return StreamingHttpResponse(lines, content_type=NDJSON)


urlpatterns = [
    re_path(r"^\$export$", system_export, name="fhir-system-export"),
    re_path(r"^Patient/\$export$", patient_export, name="fhir-patient-export"),
    re_path(r"^Patient/(?P<patient_id>[A-Za-z0-9\-.]{1,64})/\$everything$", everything.patient_everything),
    re_path(r"^Group$", group_search, name="fhir-group-search"),
    re_path(r"^Group/(?P<group>[A-Za-z0-9\-.]{1,64})$", group_read, name="fhir-group-read"),
    re_path(r"^Group/(?P<group>[A-Za-z0-9\-.]{1,64})/\$export$", group_export, name="fhir-group-export"),
    re_path(r"^bulk-status/(?P<export_id>[A-Za-z0-9\-]{1,64})$", export_status, name="fhir-export-status"),
    re_path(
        r"^bulk-files/(?P<export_id>[A-Za-z0-9\-]{1,64})/(?P<file_type>[A-Z][A-Za-z]{1,63})\.ndjson$",
        export_file,
        name="fhir-export-file",
    ),
]
