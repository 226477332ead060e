"""OAuth2 with django-oauth-toolkit: SMART scopes and the purpose of use bound to a token.

Flows: authorization code with PKCE for apps (a person signs in and approves), and
client credentials for backend services. A client-credentials token acts as the user
who owns the application (Application.user): register a backend service under the
clinician (or the service account) whose grants it should use.

The token request may carry `purpose_of_use` (an HL7 v3 PurposeOfUse code, e.g. TREAT);
it is stored with the token and binds every request made with it. A refreshed token
keeps its predecessor's purpose.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import AccessToken
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.views import RevokeTokenView, TokenView

from api.models import TokenPurpose
from consent.purposes import PURPOSE_SYSTEM, Purpose

PURPOSE_PARAMETER = "purpose_of_use"
PURPOSE_CODES = frozenset(p.value for p in Purpose)


def purpose_code(value: str) -> str | None:
    """The code of `TREAT` or `http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT`; None otherwise.

    Exactly one code: a list ("TREAT,ETREAT") or a code in another system's clothing ("TREAT|ETREAT")
    is refused, never read as whichever code came last.
    """
    system, bar, code = value.strip().rpartition("|")
    if bar and system != PURPOSE_SYSTEM:
        return None
    return code if code in PURPOSE_CODES else None


class SmartValidator(OAuth2Validator):
    """DOT's validator, plus: store the token's purpose of use next to it, in the same transaction."""

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
        asked = request.POST.get(PURPOSE_PARAMETER)
        if asked is not None and purpose_code(asked) is None:
            return _oauth_error(
                400, "invalid_request", f"{PURPOSE_PARAMETER} must be one of {', '.join(sorted(PURPOSE_CODES))}"
            )
        return super().post(request, *args, **kwargs)


@method_decorator(csrf_exempt, name="dispatch")
class SmartRevokeTokenView(_BodyLimit, RevokeTokenView):
    """DOT's revocation endpoint (RFC 7009) with the same body limit."""
