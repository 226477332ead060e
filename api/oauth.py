"""OAuth2 with django-oauth-toolkit: SMART scopes and the purpose of use bound to a token.

Flows: authorization code with PKCE for apps (a person signs in and approves), and
client credentials for backend services. A client-credentials token acts as the user
who owns the application (Application.user): register a backend service under the
clinician (or the service account) whose grants it should use.

The token request may carry `purpose_of_use` (an HL7 v3 PurposeOfUse code, e.g. TREAT);
it is stored with the token and binds every request made with it. A refreshed token
keeps its predecessor's purpose.

Hardening around DOT's stock endpoints:
- a wrong client secret costs one password-hash check whether or not the client id exists,
  so timing does not tell which client ids are registered (SmartValidator);
- the token endpoint counts failures per client address and, past OAUTH_TOKEN_FAILURE_LIMIT
  within LOGIN_FAILURE_WINDOW_SECONDS, answers 429 without checking anything (SmartTokenView);
- an authorization request must name this server's FHIR base as its SMART `aud` (SmartAuthorizationView);
- introspection at /oauth/introspect/ answers only about the calling client's own tokens
  (OwnTokensIntrospectView); any other token is {"active": false}.
PKCE S256 only, no implicit or password grant: settings.OAUTH2_PROVIDER (RFC 9700 flags).
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password, get_hasher, make_password
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import AccessToken, Application
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.views import AuthorizationView, IntrospectTokenView, RevokeTokenView, TokenView
from oauthlib.common import Request as OauthlibRequest

from api.fhir.bundles import base_url
from api.models import TokenPurpose
from api.services import token_request_failure_record, token_requests_throttled
from consent.purposes import PURPOSE_SYSTEM, Purpose

PURPOSE_PARAMETER = "purpose_of_use"
PURPOSE_CODES = frozenset(p.value for p in Purpose)
# Token-endpoint answers that count as a guess: a wrong or unknown client, a wrong code or refresh token.
COUNTED_ERRORS = frozenset({"invalid_client", "invalid_grant"})


def purpose_code(value: str) -> str | None:
    """The code of `TREAT` or `http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT`; None otherwise.

    Exactly one code: a list ("TREAT,ETREAT") or a code in another system's clothing ("TREAT|ETREAT")
    is refused, never read as whichever code came last.
    """
    system, bar, code = value.strip().rpartition("|")
    if bar and system != PURPOSE_SYSTEM:
        return None
    return code if code in PURPOSE_CODES else None


@functools.cache
def _unknown_client_secret_hash(algorithm: str) -> str:
    # Hashed once per hasher with the configured one, so checking against it costs what a real secret costs.
    return make_password(secrets.token_urlsafe(32), hasher=algorithm)


class SmartValidator(OAuth2Validator):
    """DOT's validator, plus: store the token's purpose of use next to it; no timing oracle on client ids."""

    # DOT returns at once for a client id it does not know, and checks the secret of one it knows:
    # the difference would tell which client ids exist. A failure without a loaded client spends the check.

    def _authenticate_basic_auth(self, request: Any) -> bool:
        authenticated = bool(super()._authenticate_basic_auth(request))
        if not authenticated and request.client is None and self._extract_basic_auth(request):
            _spend_a_secret_check()
        return authenticated

    def _authenticate_request_body(self, request: Any) -> bool:
        authenticated = bool(super()._authenticate_request_body(request))
        if not authenticated and request.client is None and getattr(request, "client_id", None):
            _spend_a_secret_check()
        return authenticated

    def _save_bearer_token(self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any) -> Any:
        inherited = None
        previous = getattr(request, "refresh_token_instance", None)
        if previous is not None and getattr(previous, "access_token_id", None):
            # Read before DOT revokes the old pair: rotation deletes the old access token and its purpose.
            inherited = (
                TokenPurpose.objects.filter(access_token_id=previous.access_token_id)
                .values_list("purpose", flat=True)
                .first()
            )
        saved = super()._save_bearer_token(token, request, *args, **kwargs)
        asked = getattr(request, PURPOSE_PARAMETER, None)
        purpose = purpose_code(asked) if isinstance(asked, str) and asked else inherited
        if purpose:
            access = AccessToken.objects.filter(token_checksum=_checksum(token["access_token"])).first()
            if access is not None:
                TokenPurpose.objects.update_or_create(access_token=access, defaults={"purpose": purpose})
        return saved


def _spend_a_secret_check() -> None:
    """An unknown client id costs the one password-hash check a known id with a wrong secret costs."""
    check_password(secrets.token_urlsafe(16), _unknown_client_secret_hash(get_hasher().algorithm))


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _oauth_error(status: int, error: str, description: str) -> HttpResponse:
    body = {"error": error, "error_description": description}
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


class _BodyLimit:
    """An oversized form body is 413 in OAuth's error shape, not Django's generic 400 page.

    Overriding dispatch drops DOT's own csrf_exempt marking, so the subclasses carry it again:
    OAuth clients authenticate with client credentials, never with a browser session.
    """

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        except RequestDataTooBig:
            return _oauth_error(413, "invalid_request", "the request body is larger than this server accepts")


@method_decorator(csrf_exempt, name="dispatch")
class SmartTokenView(_BodyLimit, TokenView):
    """DOT's token endpoint, refusing an unknown `purpose_of_use` before any token is made."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        address = request.META.get("REMOTE_ADDR") or None
        if token_requests_throttled(address=address):
            response = _oauth_error(429, "invalid_request", "too many failed token requests; try again later")
            response["Retry-After"] = str(settings.LOGIN_FAILURE_WINDOW_SECONDS)
            return response
        asked = request.POST.get(PURPOSE_PARAMETER)
        if asked is not None and purpose_code(asked) is None:
            return _oauth_error(
                400, "invalid_request", f"{PURPOSE_PARAMETER} must be one of {', '.join(sorted(PURPOSE_CODES))}"
            )
        response = super().post(request, *args, **kwargs)
        if response.status_code in (400, 401) and _oauth_error_code(response) in COUNTED_ERRORS:
            token_request_failure_record(address=address)
        return response


@method_decorator(csrf_exempt, name="dispatch")
class SmartRevokeTokenView(_BodyLimit, RevokeTokenView):
    """DOT's revocation endpoint (RFC 7009) with the same body limit."""


def _oauth_error_code(response: HttpResponse) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def audience_is_this_server(request: HttpRequest, aud: str) -> bool:
    """SMART's `aud`: the FHIR base URL the app means to call, which must be this server's own."""
    return aud.rstrip("/") == base_url(request).rstrip("/")


class SmartAuthorizationView(AuthorizationView):
    """DOT's authorization endpoint, refusing a request whose SMART `aud` is not this server's FHIR base.

    `aud` is required on the request the app sends (GET), as SMART App Launch requires: a token
    asked for another resource server is never issued here. The approval form this server renders
    posts back without it; an `aud` that is posted must match too.
    """

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = self._audience_refused(request, request.GET.get("aud"), required=True)
        return refused or super().get(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = self._audience_refused(request, request.POST.get("aud"), required=False)
        return refused or super().post(request, *args, **kwargs)

    @staticmethod
    def _audience_refused(request: HttpRequest, aud: str | None, *, required: bool) -> HttpResponse | None:
        if aud is None and not required:
            return None
        if aud is not None and audience_is_this_server(request, aud):
            return None
        # Not sent back to the app's redirect URI: an app naming another server is not to be trusted with it.
        return _oauth_error(400, "invalid_request", f"aud must be this server's FHIR base URL, {base_url(request)}")


@method_decorator(csrf_exempt, name="dispatch")
class OwnTokensIntrospectView(IntrospectTokenView):
    """DOT's RFC 7662 endpoint, answering a client about its own tokens only.

    DOT's view tells any authenticated client everything about any token (its user, scopes,
    client). Here the calling client is known (by its credentials, or by the token it presents),
    and a token issued to another client is {"active": false}, the answer for an unknown token.
    """

    def authenticate_client(self, request: HttpRequest) -> bool:
        core = self.get_oauthlib_core()
        uri, method, body, headers = core._extract_params(request)
        oauth_request = OauthlibRequest(uri, method, body, headers)
        authenticated = bool(core.server.request_validator.authenticate_client(oauth_request))
        if authenticated:
            request.introspecting_client = oauth_request.client  # type: ignore[attr-defined]
        return authenticated

    def verify_request(self, request: HttpRequest) -> Any:
        valid, oauth_request = super().verify_request(request)
        if valid:
            request.introspecting_client = oauth_request.access_token.application  # type: ignore[attr-defined]
        return valid, oauth_request

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._own_token_response(request, request.GET.get("token"))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._own_token_response(request, request.POST.get("token"))

    def _own_token_response(self, request: HttpRequest, token: str | None) -> HttpResponse:
        caller: Application | None = getattr(request, "introspecting_client", None)
        if token is not None:
            issued = AccessToken.objects.filter(token_checksum=_checksum(token))
            owner = issued.values_list("application_id", flat=True).first()
            if caller is None or owner != caller.pk:
                return JsonResponse({"active": False})
        return self.get_token_response(token)  # type: ignore[no-any-return]
