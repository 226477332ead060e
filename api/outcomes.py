"""The FHIR surface's one error shape: every error is an OperationOutcome.

Domain errors (healthledger.errors) carry their status and issues; this module turns
them into responses, adds the API's own errors (401, 403 for scopes, 405, 406, 415),
and maps what Django and the database raise on bad input or a missing service
(api.handlers answers the same for errors raised outside a FHIR view).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
from django.core.exceptions import BadRequest as DjangoBadRequest
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse

from healthledger.errors import HealthLedgerError, OutcomeIssue, ServiceUnavailable

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
FHIR_CONTENT_TYPE = "application/fhir+json; charset=utf-8"
REALM = "HealthLedger FHIR"
NOT_FOUND_MESSAGE = "resource not found"
# Seconds a client should wait when the database or another service is down.
RETRY_AFTER_SECONDS = 5


@dataclass
class BadRequest(HealthLedgerError):
    """A request the API cannot act on as asked: unknown parameter, bad value, wrong shape."""

    status: int = field(default=400, kw_only=True)
    issue_code: str = field(default="invalid", kw_only=True)


@dataclass
class NotAuthenticated(HealthLedgerError):
    """No bearer token, or one that is unknown, expired or revoked."""

    token_given: bool = field(default=False, kw_only=True)
    status: int = field(default=401, kw_only=True)
    issue_code: str = field(default="login", kw_only=True)


@dataclass
class ScopeDenied(HealthLedgerError):
    """The token's scopes do not cover this interaction on this resource type, whatever the data."""

    status: int = field(default=403, kw_only=True)
    issue_code: str = field(default="forbidden", kw_only=True)


@dataclass
class NotSupported(HealthLedgerError):
    """Method (405), format (406) or media type (415) the endpoint does not speak."""

    status: int = field(default=405, kw_only=True)
    issue_code: str = field(default="not-supported", kw_only=True)
    allow: str = field(default="", kw_only=True)


def outcome_bytes(issues: list[OutcomeIssue]) -> bytes:
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue.as_fhir() for issue in issues]})


def outcome_response(status: int, issues: list[OutcomeIssue], headers: dict[str, str] | None = None) -> HttpResponse:
    """An OperationOutcome response with the FHIR media type."""
    response = HttpResponse(outcome_bytes(issues), status=status, content_type=FHIR_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_response(error: HealthLedgerError) -> HttpResponse:
    """The response for a domain or API error; messages never carry PHI (they name elements and codes)."""
    headers: dict[str, str] = {}
    if isinstance(error, ServiceUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    elif error.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if isinstance(error, NotAuthenticated):
        challenge = f'Bearer realm="{REALM}"'
        if error.token_given:
            challenge += ', error="invalid_token", error_description="the access token is unknown, expired or revoked"'
        headers["WWW-Authenticate"] = challenge
    if isinstance(error, NotSupported) and error.allow:
        headers["Allow"] = error.allow
    if error.status >= 500:
        logger.error("fhir api error status=%s type=%s", error.status, type(error).__name__)
    return outcome_response(error.status, error.issues, headers)


def not_found_response() -> HttpResponse:
    """What a stranger gets for a resource that does not exist, and what a denied caller gets: identical."""
    return outcome_response(404, [OutcomeIssue(code="not-found", diagnostics=NOT_FOUND_MESSAGE)])


def exception_response(exc: Exception) -> HttpResponse | None:
    """The response for what Django or the database raise on bad input or a missing service; None otherwise."""
    if isinstance(exc, HealthLedgerError):
        return error_response(exc)
    if isinstance(exc, RequestDataTooBig):
        return outcome_response(
            413, [OutcomeIssue(code="too-costly", diagnostics="the request body is larger than this server accepts")]
        )
    if isinstance(exc, TooManyFieldsSent):
        return outcome_response(
            400, [OutcomeIssue(code="too-costly", diagnostics="the request has more parameters than this server takes")]
        )
    if isinstance(exc, SuspiciousOperation | DjangoBadRequest):
        # An unknown Host, a malformed body ...: Django's own "bad request", said without echoing the input.
        return outcome_response(400, [OutcomeIssue(code="invalid", diagnostics="the request could not be understood")])
    if isinstance(exc, Http404):
        return not_found_response()
    if isinstance(exc, PermissionDenied):
        return outcome_response(403, [OutcomeIssue(code="forbidden", diagnostics="this request is not allowed")])
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is down or unreachable: not the client's fault, and worth a retry.
        logger.warning("database unavailable: %s", type(exc).__name__)
        return outcome_response(
            503,
            [OutcomeIssue(code="transient", diagnostics="a service this request needs is unavailable; retry later")],
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return None
