"""What the server supports, said exactly: the CapabilityStatement and the SMART configuration.

Both are built from the same constants the views use (types, search parameters, sorts),
so the statement cannot drift from the behaviour.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, JsonResponse

from api import research_fhir
from api.access import fhir_endpoint
from api.fhir import audit_events, consents, records
from api.fhir.bulk_operations import group_capability, system_capability_operations
from api.fhir.operations import capability_operations
from api.fhir.params import COUNT_DEFAULT, COUNT_MAX
from api.outcomes import FHIR_CONTENT_TYPE
from api.smart import smart_configuration_document
from healthledger.errors import ResourceNotFound
from records.fhir.search_parameters import search_parameter_by_id, search_parameters

FHIR_VERSION = "4.3.0"
SOFTWARE_VERSION = "0.1.0"
RELEASE_DATE = "2026-01-01"
_PARAM_DOCS = {
    "patient": (
        "reference",
        "The patient whose record is searched (Patient/<id> or <id>); patients default to their own",
    ),
    "subject": ("reference", "Same as patient: subject=Patient/<id>"),
    "_id": ("token", "Resource ids, comma-separated"),
    "code": ("token", "system|code, comma-separated alternatives; repeat the parameter to require several"),
    "category": ("token", "system|code, comma-separated alternatives"),
    "date": ("date", "The resource's clinical dates, by calendar day; prefixes eq, ge, gt, le, lt"),
    "_lastUpdated": ("date", "When the server stored the current version; prefixes eq, ge, gt, le, lt"),
    "status": ("token", "Consent status: proposed, active, inactive, rejected"),
    "outcome": ("token", "0 permitted, 4 denied"),
}
_RESULT_DOCS = (
    f"_count (default {COUNT_DEFAULT}, at most {COUNT_MAX}; 0 returns only the total), _offset (paging; "
    "next/previous links carry the query), _summary=count, true (summary elements), data (no narrative) or false, "
    "_sort on date (clinical date), _lastUpdated and _id, several keys comma-separated (- before a key: "
    "descending; then id), _elements, "
    "_format=json; POST {type}/_search takes the parameters as a form; parameters a type does not take are "
    "ignored and named in an OperationOutcome entry, or refused (400) with Prefer: handling=strict"
)


def _search_params(names: frozenset[str]) -> list[dict[str, str]]:
    return [
        {"name": name, "type": _PARAM_DOCS[name][0], "documentation": _PARAM_DOCS[name][1]}
        for name in sorted(names)
        if name in _PARAM_DOCS
    ]


def _oauth_uris(base: str) -> dict[str, Any]:
    return {
        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
        "extension": [
            {"url": "authorize", "valueUri": f"{base}/oauth/authorize/"},
            {"url": "token", "valueUri": f"{base}/oauth/token/"},
            {"url": "revoke", "valueUri": f"{base}/oauth/revoke_token/"},
            {"url": "introspect", "valueUri": f"{base}/api/token/introspect"},
            {"url": "register", "valueUri": f"{base}/oauth/register"},
            {"url": "manage", "valueUri": f"{base}/clinician/apps/"},
        ],
    }


def _declared_params(resource_type: str, fhir_base: str) -> list[dict[str, str]]:
    """Exactly what a search of the type takes, each with its definition's canonical URL."""
    return [
        {"name": p.code, "definition": p.url(fhir_base), "type": p.type, "documentation": p.description}
        for p in search_parameters(resource_type).values()
    ]


def _record_resource(resource_type: str, fhir_base: str) -> dict[str, Any]:
    writable = [] if resource_type == "Patient" else ["create", "update", "patch"]
    interactions = ["read", "vread", "history-instance", "search-type", *writable]
    resource: dict[str, Any] = {
        "type": resource_type,
        "interaction": [{"code": code} for code in interactions],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": False,
        "conditionalCreate": resource_type != "Patient",
        "conditionalRead": "full-support",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": _declared_params(resource_type, fhir_base),
    }
    declared_operations = capability_operations(resource_type, fhir_base)
    if declared_operations:
        resource["operation"] = declared_operations
    return resource


@lru_cache(maxsize=8)
def capability_statement(base: str) -> bytes:
    """The CapabilityStatement for a server reached at `base` (scheme://host), as JSON bytes."""
    served = {entry["type"] for entry in research_fhir.CAPABILITY}  # searched there, not in the records
    resources = [_record_resource(t, f"{base}/fhir") for t in sorted(records.RECORD_TYPES) if t not in served]
    resources += [
        {
            "type": "Consent",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": _search_params(consents.SEARCH_PARAMETERS),
        },
        {
            "type": "AuditEvent",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": _search_params(audit_events.SEARCH_PARAMETERS - {"_sort"}),
        },
        group_capability(f"{base}/fhir"),
        *research_fhir.CAPABILITY,
    ]
    resources.sort(key=lambda r: r["type"])
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": RELEASE_DATE,
        "publisher": "HealthLedger",
        "kind": "instance",
        "software": {"name": "HealthLedger", "version": SOFTWARE_VERSION},
        "implementation": {
            "description": "HealthLedger FHIR API: patient-controlled, consent-gated",
            "url": f"{base}/fhir",
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Every read is decided against the patient's consent and logged. " + _RESULT_DOCS,
                "security": {
                    "cors": True,  # for the browser origins registered apps list (api/cors.py)
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [_oauth_uris(base)],
                    "description": "OAuth2 bearer tokens (authorization code with PKCE, SMART launch/patient "
                    "and EHR launch, client credentials with a client secret or a private_key_jwt assertion); "
                    "SMART scopes narrow what the patient's grant allows. Purpose of use: X-Purpose-Of-Use "
                    "header or the purpose_of_use token parameter; break-glass: ETREAT with X-Break-Glass-Reason.",
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "operation": system_capability_operations(f"{base}/fhir"),
                # Patient/{id}/{type} searches that patient's record.
                "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
            }
        ],
    }
    return orjson.dumps(statement)


def _origin(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@fhir_endpoint("GET", authenticated=False)
def metadata(request: HttpRequest, context: None) -> HttpResponse:
    return HttpResponse(capability_statement(_origin(request)), content_type=FHIR_CONTENT_TYPE)


@fhir_endpoint("GET", authenticated=False)
def smart_configuration(request: HttpRequest, context: None) -> HttpResponse:
    return JsonResponse(smart_configuration_document(_origin(request)))


@fhir_endpoint("GET", authenticated=False)
def search_parameter_read(request: HttpRequest, context: None, definition_id: str) -> HttpResponse:
    """This server's own SearchParameter definitions, the canonical URLs its CapabilityStatement names."""
    parameter = search_parameter_by_id(definition_id)
    if parameter is None:
        raise ResourceNotFound("resource not found")
    fhir_base = f"{_origin(request)}/fhir"
    definition = {
        "resourceType": "SearchParameter",
        "id": parameter.id,
        "url": parameter.url(fhir_base),
        "name": parameter.id.replace("-", ""),
        "status": "active",
        "description": parameter.description,
        "code": parameter.code,
        "base": [parameter.resource_type],
        "type": parameter.type,
    }
    if parameter.expression:
        definition["expression"] = parameter.expression
    if parameter.modifiers:
        definition["modifier"] = list(parameter.modifiers)
    return HttpResponse(orjson.dumps(definition), content_type=FHIR_CONTENT_TYPE)
