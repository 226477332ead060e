"""FHIR operations this server defines, declared once: the OperationDefinition, the CapabilityStatement and the parser.

`Patient/{id}/$diagnose` takes its inputs either in the query (`?model=...&as-of=...`) or
as a standard `Parameters` body, as FHIR allows for any operation; both at once must agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse

from api.access import fhir_endpoint
from api.fhir.bulk_operations import bulk_capability_operations, bulk_definition
from api.outcomes import FHIR_CONTENT_TYPE, BadRequest, NotSupported
from healthledger.errors import ResourceNotFound
from records.fhir.jsonio import DuplicateKey, loads_exact

_JSON_BODIES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_FORM_BODIES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


@dataclass(frozen=True)
class OperationParameter:
    name: str
    type: str  # the FHIR type of its value: valueString, valueDate ...
    min: int
    documentation: str
    value_keys: tuple[str, ...]  # the Parameters.parameter value[x] keys accepted for it


@dataclass(frozen=True)
class Operation:
    id: str  # the OperationDefinition's id
    code: str
    resource_type: str
    title: str
    description: str
    inputs: tuple[OperationParameter, ...]
    output_type: str


DIAGNOSE = Operation(
    id="Patient-diagnose",
    code="diagnose",
    resource_type="Patient",
    title="Run an AI diagnostic model on a patient's record",
    description=(
        "Queues a model run on the record under the caller's run-model grant (or the patient's own). "
        "Answers 202 Accepted with the job as a Task; follow its Content-Location until it is completed "
        "(output: a RiskAssessment and its Provenance, which the requester may read), rejected or failed."
    ),
    inputs=(
        OperationParameter("model", "string", 1, "The model's id", ("valueString", "valueCode", "valueId")),
        OperationParameter(
            "as-of", "date", 0, "The date the score is for (default: today)", ("valueDate", "valueString")
        ),
    ),
    output_type="Task",
)
# Query parameters with no effect on an operation's result.
_IGNORED_QUERY = frozenset({"_format", "_pretty"})


def operation_definition(operation: Operation, fhir_base: str) -> dict[str, Any]:
    """The OperationDefinition resource of `operation`."""
    parameters = [
        {
            "name": p.name,
            "use": "in",
            "min": p.min,
            "max": "1",
            "type": p.type,
            "documentation": p.documentation,
        }
        for p in operation.inputs
    ]
    parameters.append({"name": "return", "use": "out", "min": 1, "max": "1", "type": operation.output_type})
    return {
        "resourceType": "OperationDefinition",
        "id": operation.id,
        "url": definition_url(operation, fhir_base),
        "name": operation.id.replace("-", ""),
        "title": operation.title,
        "status": "active",
        "kind": "operation",
        "description": operation.description,
        "affectsState": True,
        "code": operation.code,
        "resource": [operation.resource_type],
        "system": False,
        "type": False,
        "instance": True,
        "parameter": parameters,
    }


def definition_url(operation: Operation, fhir_base: str) -> str:
    return f"{fhir_base}/OperationDefinition/{operation.id}"


OPERATIONS = {DIAGNOSE.id: DIAGNOSE}


def _parameters_body(request: HttpRequest) -> dict[str, Any] | None:
    """The request's Parameters resource, or None when there is no body; 400 or 415 for anything else."""
    body = request.body
    media = (request.content_type or "").lower()
    if not body.strip() or (media in _FORM_BODIES and not request.POST and not request.FILES):
        return None  # no inputs in the body (some clients send an empty form with a bare POST)
    if media not in _JSON_BODIES:
        raise NotSupported("send a FHIR Parameters resource as JSON (Content-Type: application/fhir+json)", status=415)
    try:
        data = loads_exact(body.removeprefix(b"\xef\xbb\xbf"))
    except (orjson.JSONDecodeError, DuplicateKey) as exc:
        raise BadRequest("the body is not valid FHIR JSON", issue_code="structure") from exc
    if not isinstance(data, dict) or data.get("resourceType") != "Parameters":
        raise BadRequest("the body of an operation must be a Parameters resource", issue_code="structure")
    if not isinstance(data.get("parameter", []), list):
        raise BadRequest("Parameters.parameter must be a list", issue_code="structure")
    return data


def _from_parameters(operation: Operation, data: dict[str, Any]) -> dict[str, str]:
    declared = {p.name: p for p in operation.inputs}
    found: dict[str, str] = {}
    for item in data.get("parameter", []):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise BadRequest("each Parameters.parameter needs a name", issue_code="structure")
        if name not in declared:
            raise BadRequest(f"unsupported parameter(s): {name}")
        if name in found:
            raise BadRequest(f"parameter {name} is given more than once")
        values = [item[key] for key in declared[name].value_keys if key in item]
        if len(values) != 1 or not isinstance(values[0], str):
            keys = " or ".join(declared[name].value_keys)
            raise BadRequest(f"parameter {name} needs one {keys}", issue_code="structure")
        found[name] = values[0]
    return found


def operation_inputs(request: HttpRequest, operation: Operation) -> dict[str, str]:
    """The operation's inputs by name, from the query and a Parameters body; 400 for unknown or conflicting ones."""
    declared = {p.name for p in operation.inputs}
    unknown = sorted(set(request.GET) - declared - _IGNORED_QUERY)
    if unknown:
        raise BadRequest(f"unsupported parameter(s): {', '.join(unknown)}")
    inputs: dict[str, str] = {}
    for name in declared & set(request.GET):
        values = request.GET.getlist(name)
        if len(values) > 1:
            raise BadRequest(f"parameter {name} is given more than once")
        inputs[name] = values[0]
    data = _parameters_body(request)
    for name, value in (_from_parameters(operation, data) if data is not None else {}).items():
        if name in inputs and inputs[name] != value:
            raise BadRequest(f"parameter {name} differs between the query and the Parameters body")
        inputs[name] = value
    return inputs


def capability_operations(resource_type: str, fhir_base: str) -> list[dict[str, str]]:
    """The CapabilityStatement's `operation` entries of a type."""
    return [
        {"name": op.code, "definition": definition_url(op, fhir_base)}
        for op in OPERATIONS.values()
        if op.resource_type == resource_type
    ] + bulk_capability_operations(resource_type, fhir_base)


@fhir_endpoint("GET", authenticated=False)
def operation_definition_read(request: HttpRequest, context: None, definition_id: str) -> HttpResponse:
    operation = OPERATIONS.get(definition_id)
    fhir_base = request.build_absolute_uri("/fhir")
    bulk = bulk_definition(definition_id, fhir_base) if operation is None else None
    if bulk is not None:
        return HttpResponse(orjson.dumps(bulk), content_type=FHIR_CONTENT_TYPE)
    if operation is None:
        raise ResourceNotFound("resource not found")
    return HttpResponse(orjson.dumps(operation_definition(operation, fhir_base)), content_type=FHIR_CONTENT_TYPE)
