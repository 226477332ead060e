"""The site's error handlers (handler400, 403, 404, 500): under /fhir an OperationOutcome, elsewhere the portal's page.

Views under /fhir turn their own errors into OperationOutcomes (api.access.fhir_endpoint);
these handlers answer what Django raises before or around a view (an unknown host, too many
parameters, a body past DATA_UPLOAD_MAX_MEMORY_SIZE) and any error no view handled, so a FHIR
client never receives an HTML page. A 500 says nothing of its cause: that goes to the log.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views import defaults

from api.outcomes import exception_response, not_found_response, outcome_response
from healthledger.errors import OutcomeIssue

FHIR_ROOT = "/fhir"


def is_fhir(request: HttpRequest) -> bool:
    path = request.path_info
    return path == FHIR_ROOT or path.startswith(FHIR_ROOT + "/")


def bad_request(request: HttpRequest, exception: Exception, template_name: str = "400.html") -> HttpResponse:
    if not is_fhir(request):
        return defaults.bad_request(request, exception, template_name)
    return exception_response(exception) or outcome_response(
        400, [OutcomeIssue(code="invalid", diagnostics="the request could not be understood")]
    )


def permission_denied(request: HttpRequest, exception: Exception, template_name: str = "403.html") -> HttpResponse:
    if not is_fhir(request):
        return defaults.permission_denied(request, exception, template_name)
    return outcome_response(403, [OutcomeIssue(code="forbidden", diagnostics="this request is not allowed")])


def page_not_found(request: HttpRequest, exception: Exception, template_name: str = "404.html") -> HttpResponse:
    if not is_fhir(request):
        return defaults.page_not_found(request, exception, template_name)
    return not_found_response()


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    if not is_fhir(request):
        return defaults.server_error(request, template_name)
    return outcome_response(
        500, [OutcomeIssue(code="exception", diagnostics="the server could not complete this request")]
    )
