"""CORS for browser apps on /fhir and the OAuth token endpoints: registered origins only.

An origin is allowed when a registered application lists it (django-oauth-toolkit's
`Application.allowed_origins`, filled in at registration). Only that exact origin is echoed,
with `Vary: Origin`; never `*`, and never `Access-Control-Allow-Credentials`: the API's only
credential is a bearer token the app sends itself, so no cookie should ride along.
An OPTIONS preflight is answered here (204 for a registered origin, 403 for any other),
before any view runs. A request without an Origin header costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from oauth2_provider.models import Application

CORS_PATH_PREFIXES = ("/fhir", "/oauth/token/", "/oauth/revoke_token/", "/oauth/jwks")
ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = (
    "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-None-Exist, If-Modified-Since,"
    " X-Purpose-Of-Use, X-Break-Glass-Reason, X-Break-Glass-Code"
)
EXPOSED_HEADERS = "Location, Content-Location, ETag, Last-Modified, Retry-After, X-Progress"
MAX_ORIGIN = 2000


def origin_registered(origin: str) -> bool:
    """Whether some registered application lists exactly this origin (scheme://host[:port])."""
    if not origin or len(origin) > MAX_ORIGIN or origin == "null" or "://" not in origin:
        return False
    listed = Application.objects.filter(allowed_origins__contains=origin).values_list("allowed_origins", flat=True)
    return any(origin in value.split() for value in listed)


class CorsMiddleware:
    """Answers preflights and marks responses for registered browser origins under CORS_PATH_PREFIXES."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        origin = request.headers.get("Origin")
        if origin is None or not request.path_info.startswith(CORS_PATH_PREFIXES):
            return self.get_response(request)
        allowed = origin_registered(origin)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = HttpResponse(status=204 if allowed else 403)
            if allowed:
                response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
                response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
                response["Access-Control-Max-Age"] = "600"
        else:
            response = self.get_response(request)
        if allowed:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        elif "Access-Control-Allow-Origin" in response:
            del response["Access-Control-Allow-Origin"]
        response.headers.pop("Access-Control-Allow-Credentials", None)
        _vary_origin(response)
        return response


def _vary_origin(response: HttpResponse) -> None:
    vary = [v.strip() for v in response.get("Vary", "").split(",") if v.strip()]
    if "Origin" not in vary:
        response["Vary"] = ", ".join([*vary, "Origin"])
