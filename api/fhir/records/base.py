"""What every record interaction shares: which types are a record's, and how a stored version is served."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpResponse
from django.utils.http import http_date

from api.outcomes import FHIR_CONTENT_TYPE
from healthledger.errors import ResourceNotFound
from records.fhir.resource_types import RESOURCE_TYPES

# Served by their own modules (api.fhir.consents, api.fhir.audit_events) or not resources of a record.
NOT_RECORD_TYPES = frozenset({"Consent", "AuditEvent", "Bundle", "CapabilityStatement", "OperationOutcome"})
RECORD_TYPES = frozenset(RESOURCE_TYPES - NOT_RECORD_TYPES)
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
