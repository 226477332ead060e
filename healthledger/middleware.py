"""Middleware that runs for browser pages only, and the headers the token-authenticated API gets instead.

The FHIR API authenticates every request by its bearer token alone: no cookie carries authority
there, so sessions, CSRF, the session user, the second-factor check and flash messages do nothing
for it but cost every request. Each `PageOnly...` class below is the library's own middleware
(a subclass, so Django's checks still recognise it) that steps aside for paths under
settings.API_PATH_PREFIXES.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

# What an API response gets in place of the portal's page policy: it is data, never a document to render.
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
_HOOKS = ("process_view", "process_exception", "process_template_response")


def _page_only(dotted: str) -> type:
    base: type = import_string(dotted)

    def __init__(self: Any, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        base.__init__(self, get_response)  # type: ignore[misc]
        # Read once: the prefixes are fixed for the process (the bench sets its own before loading).
        self.api_prefixes = tuple(settings.API_PATH_PREFIXES)

    def __call__(self: Any, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(self.api_prefixes):
            return self.get_response(request)  # type: ignore[no-any-return]
        return base.__call__(self, request)  # type: ignore[no-any-return]

    def hook(name: str) -> Callable[..., Any]:
        method = getattr(base, name)

        def step_aside(self: Any, request: HttpRequest, *args: Any) -> Any:
            if request.path_info.startswith(self.api_prefixes):
                # process_template_response hands the response on; the others answer "carry on".
                return args[0] if name == "process_template_response" else None
            return method(self, request, *args)

        return step_aside

    attrs: dict[str, Any] = {"__init__": __init__, "__call__": __call__, "__doc__": f"{dotted}, for pages only."}
    attrs.update({name: hook(name) for name in _HOOKS if hasattr(base, name)})
    return type("PageOnly" + base.__name__, (base,), attrs)


PageOnlyCSPMiddleware = _page_only("csp.middleware.CSPMiddleware")
PageOnlySessionMiddleware = _page_only("django.contrib.sessions.middleware.SessionMiddleware")
PageOnlyCsrfViewMiddleware = _page_only("django.middleware.csrf.CsrfViewMiddleware")
PageOnlyAuthenticationMiddleware = _page_only("django.contrib.auth.middleware.AuthenticationMiddleware")
PageOnlyOTPMiddleware = _page_only("django_otp.middleware.OTPMiddleware")
PageOnlyMessageMiddleware = _page_only("django.contrib.messages.middleware.MessageMiddleware")


class ApiHeadersMiddleware:
    """The API's own Content-Security-Policy, set where the page policy is skipped."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.api_prefixes = tuple(settings.API_PATH_PREFIXES)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path_info.startswith(self.api_prefixes):
            response.headers.setdefault("Content-Security-Policy", API_CONTENT_SECURITY_POLICY)
        return response


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every answer that can carry health data or account data.

    That is everything under NO_STORE_PATH_PREFIXES (the FHIR and JSON APIs, OAuth, the admin)
    and every page served to a signed-in user: no browser cache, shared proxy or back button
    keeps a copy of a record after the session ends. Public pages (sign-in, the FHIR
    CapabilityStatement to an anonymous client) keep whatever caching they chose; static
    files never reach this middleware (WhiteNoise answers them first).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.prefixes = tuple(settings.NO_STORE_PATH_PREFIXES)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        signed_in = user is not None and user.is_authenticated
        sensitive = request.path_info.startswith(self.prefixes) or signed_in
        if sensitive and "no-store" not in response.headers.get("Cache-Control", ""):
            response.headers["Cache-Control"] = "no-store"
        return response
