"""What every FHIR endpoint does before its own work: format, authentication, scopes, purpose of use.

Other FHIR modules (api.fhir_diagnostics ...) build on these:

    @fhir_endpoint("GET")
    def task_read(request, context, task_id):
        scope_require(context, "Task", "r")
        caller = gate_caller(request, context)
        ...

`fhir_endpoint` turns every error into an OperationOutcome (api.outcomes), so views raise
domain errors and never build error responses themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.models import Role
from api.auth import TokenContext, bearer_authenticate
from api.oauth import PURPOSE_CODES, purpose_code
from api.outcomes import BadRequest, NotSupported, ScopeDenied, exception_response, not_found_response
from consent.break_glass import break_glass_refusal
from consent.gate import Caller
from consent.purposes import Purpose
from healthledger.errors import ResourceNotFound

PURPOSE_HEADER = "X-Purpose-Of-Use"
REASON_HEADER = "X-Break-Glass-Reason"
CODE_HEADER = "X-Break-Glass-Code"
MAX_REASON = 1000
_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})
_DEFAULT_PURPOSE: dict[str, str] = {Role.PATIENT: Purpose.PATRQT.value, Role.RESEARCHER: Purpose.HRESCH.value}

FhirView = Callable[..., HttpResponse]


def purpose_of_use(request: HttpRequest, context: TokenContext) -> str:
    """The request's purpose: the X-Purpose-Of-Use header, else the token's, else the role's default.

    A token bound to a purpose at issue can only be used for that purpose.
    """
    asked = request.headers.get(PURPOSE_HEADER)
    if asked is not None:
        code = purpose_code(asked)
        if code is None:
            raise BadRequest(f"{PURPOSE_HEADER} must be one of {', '.join(sorted(PURPOSE_CODES))}")
        if context.purpose and code != context.purpose:
            raise ScopeDenied(f"this access token was issued for purpose {context.purpose}")
        return code
    if context.purpose:
        return context.purpose
    return _DEFAULT_PURPOSE.get(context.user.role, Purpose.TREAT.value)


def gate_caller(request: HttpRequest, context: TokenContext) -> Caller:
    """The gate's Caller for this request: the acting user, the purpose, and for break-glass its code and reason.

    A break-glass request that could never pass (a backend service's token, not a clinician: 403;
    no code or no sentence: 400) is refused here, before any record is looked at, saying why.
    """
    purpose = purpose_of_use(request, context)
    if purpose != Purpose.ETREAT:
        return Caller(
            actor=context.user,
            purpose=purpose,
            interactive=context.interactive,
            patient_context=context.patient_context,
        )
    reason = (request.headers.get(REASON_HEADER) or "").strip()[:MAX_REASON]
    code = (request.headers.get(CODE_HEADER) or "").strip()
    refused = break_glass_refusal(actor=context.user, interactive=context.interactive, code=code, reason=reason)
    if refused is not None and refused.fault == "caller":
        raise ScopeDenied(refused.message)
    if refused is not None:
        header = CODE_HEADER if refused.basis == "break-glass-needs-code" else REASON_HEADER
        raise BadRequest(f"{refused.message}, in the {header} header")
    return Caller(
        actor=context.user,
        purpose=purpose,
        reason=reason,
        break_glass_code=code,
        interactive=context.interactive,
        patient_context=context.patient_context,
    )


def scope_require(context: TokenContext, resource_type: str, permission: str) -> None:
    """403 unless the token's scopes allow `permission` (c r u d s) on the type, decided before any data is seen."""
    if not context.scopes.allows(resource_type, permission):
        verbs = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
        raise ScopeDenied(f"the access token's scopes do not allow {verbs[permission]} on {resource_type}")


def _format_check(request: HttpRequest) -> None:
    asked = request.GET.get("_format")
    if asked is not None and asked.split(";")[0].strip().lower() not in _JSON_FORMATS:
        raise NotSupported("this server speaks FHIR JSON only (_format=json)", status=406)
    accept = request.headers.get("Accept", "")
    if accept and asked is None:
        kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
        if not kinds & {"*/*", "application/*", *_JSON_FORMATS}:
            raise NotSupported("this server speaks FHIR JSON only (Accept: application/fhir+json)", status=406)


def fhir_endpoint(*methods: str, authenticated: bool = True) -> Callable[[FhirView], FhirView]:
    """Wrap a FHIR view: method and format checks, bearer authentication, errors as OperationOutcomes.

    The view is called as view(request, context, **url_kwargs), context None when not `authenticated`.
    Bearer tokens carry no ambient authority (no cookie), so CSRF does not apply.
    """
    allowed = ", ".join(methods)

    def wrap(view: FhirView) -> FhirView:
        @csrf_exempt
        @functools.wraps(view)
        def endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise NotSupported(f"{request.method} is not supported here", status=405, allow=allowed)
                _format_check(request)
                context = bearer_authenticate(request) if authenticated else None
                return view(request, context, *args, **kwargs)
            except ResourceNotFound:
                return not_found_response()
            except Exception as exc:
                response = exception_response(exc)
                if response is None:
                    raise
                return response

        return endpoint

    return wrap
