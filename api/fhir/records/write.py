"""Create (and If-None-Exist), update (and If-Match) and the patient's transaction import."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction as db_transaction
from django.http import HttpRequest, HttpResponse, QueryDict

from accounts.models import Role
from api import selectors
from api.access import fhir_endpoint, gate_caller, scope_require
from api.auth import (
    TokenContext,
)
from api.fhir import params
from api.fhir.records.base import MAX_QUERY_LOGGED, _record_type, _served
from api.fhir.records.search import _criteria, supported_parameters
from api.outcomes import FHIR_CONTENT_TYPE, BadRequest, NotSupported, ScopeDenied
from api.selectors import Located
from consent import gate, pdp, writes
from consent.pdp import Decision
from healthledger.errors import DocumentTooLarge, InvalidFHIR, ResourceNotFound
from records.fhir import canonical_json
from records.fhir.index import patient_references
from records.fhir.jsonio import DuplicateKey, dumps_exact, loads_exact
from records.fhir.validation import control_character_issues
from records.models import Patient, Resource

_JSON_BODIES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})


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


def _version_replace(
    caller: gate.Caller, located: Located, resource: dict[str, Any], *, check: Callable[[int | None, Decision], None]
) -> int:
    """Store `resource` as the next version of the resource `located` names (PUT and PATCH); the version now current.

    Under a lock on the resource row, `check` sees the current version and the write's decision and may refuse
    (412) before anything is written. A caller who may not write gets the 404 of a missing resource, its deny
    entry committed. The same content again stores nothing: the version stays the one `located` found.
    """
    resource_type, resource_id = resource["resourceType"], resource["id"]
    entry = {"resource": resource, "request": {"method": "PUT", "url": f"{resource_type}/{resource_id}"}}
    bundle = dumps_exact({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    denied: ResourceNotFound | None = None
    with db_transaction.atomic():
        # Locks the resource row: of two writes from the same version, the second sees the first's (and a
        # check on the version refuses it), never a silent overwrite of a version it did not see.
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
        check(current, decision)
        try:
            written = _write(caller, located.patient, bundle).ingest.patients[located.patient.pk]
        except ResourceNotFound as error:
            denied = error  # raised after the block, so the deny entry commits
    if denied is not None:
        raise denied
    changed = written.updated or written.created
    return int(changed[0].rsplit("/", 1)[1]) if changed else located.version


def _version_response(request: HttpRequest, resource: dict[str, Any], version: int) -> HttpResponse:
    """The answer to a PUT or PATCH: the stored version (or nothing, for Prefer: return=minimal), with its ETag."""
    resource_type, resource_id = resource["resourceType"], resource["id"]
    stored = selectors.resource_locate(resource_type=resource_type, resource_id=resource_id, version=version)
    if stored is None:  # erased between the write and this lookup
        raise ResourceNotFound("resource not found")
    reference = f"{resource_type}/{resource_id}/_history/{version}"
    prefer = request.headers.get("Prefer", "")
    content = b"" if "return=minimal" in prefer else _representation(resource, reference, stored.updated_at)
    response = _served(content, version, stored.updated_at)
    response["Content-Location"] = request.build_absolute_uri(f"/fhir/{reference}")
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

    def if_match(current: int | None, decision: Decision) -> None:
        if decision.permit and expected is not None and expected.strip().removeprefix("W/") != f'"{current}"':
            raise BadRequest(f"If-Match: the current version is {current}", status=412, issue_code="conflict")

    version = _version_replace(caller, located, resource, check=if_match)
    return _version_response(request, resource, version)


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
