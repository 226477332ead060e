"""App registration without an operator: the clinician's apps page, and RFC 7591 dynamic client registration.

A registered client is a django-oauth-toolkit Application owned by the clinician who registered
it (a backend client acts for its owner, never for more than the owner may see), with a
ClientProfile holding its keys and how it authenticates:

- with redirect URIs: an app a person signs in to (authorization code + PKCE); public (no secret),
  or confidential with a client secret or a signed JWT (private_key_jwt);
- without: a backend service (client credentials), confidential, with a secret or private_key_jwt.

Browser origins listed at registration are the only ones CORS lets in (api.cors).
RFC 7591: POST /oauth/register with `Authorization: Bearer <initial access token>`, a token the
clinician made on the apps page; it is single use and expires (SMART_INITIAL_ACCESS_TOKEN_SECONDS).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from django_otp import user_has_device
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import Application

from accounts.models import Role, User
from api.backend_services import JwksUnavailable, jwks_parse
from api.scopes import scope_valid
from api.smart_models import AuthMethod, ClientProfile, InitialAccessToken

logger = logging.getLogger(__name__)

MAX_URIS = 10
MAX_BODY = 65_536
MAX_NAME = 255


class RegistrationError(Exception):
    """Client metadata that cannot be registered; `error` is the RFC 7591 error code."""

    def __init__(self, message: str, error: str = "invalid_client_metadata") -> None:
        super().__init__(message)
        self.error = error


@dataclass
class ClientMetadata:
    """What a client registers (RFC 7591 names where there is one)."""

    client_name: str
    redirect_uris: list[str] = field(default_factory=list)
    token_endpoint_auth_method: str = AuthMethod.CLIENT_SECRET.value
    scope: str = ""
    jwks: dict[str, Any] | None = None
    jwks_uri: str = ""
    allowed_origins: list[str] = field(default_factory=list)
    launch_uri: str = ""  # where an EHR launch opens the app (api.ehr_launch)


@dataclass(frozen=True)
class Registered:
    application: Application
    client_secret: str | None  # shown once, never stored in the clear


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _redirect_uri_valid(uri: str) -> bool:
    parts = urlsplit(uri)
    schemes = cast(list[str], settings.OAUTH2_PROVIDER.get("ALLOWED_REDIRECT_URI_SCHEMES", ["https"]))
    return parts.scheme in schemes and bool(parts.netloc) and not parts.fragment and len(uri) <= 2000


def _origin_valid(origin: str) -> bool:
    parts = urlsplit(origin)
    return (
        parts.scheme in ("https", "http")
        and bool(parts.netloc)
        and not parts.path
        and not parts.query
        and not parts.fragment
        and origin == f"{parts.scheme}://{parts.netloc}"
        and (parts.scheme == "https" or settings.DEBUG or parts.hostname in ("localhost", "127.0.0.1"))
    )


def _checked(meta: ClientMetadata) -> ClientMetadata:
    name = meta.client_name.strip()
    if not name or len(name) > MAX_NAME:
        raise RegistrationError("client_name is required (at most 255 characters)")
    if len(meta.redirect_uris) > MAX_URIS or not all(_redirect_uri_valid(u) for u in meta.redirect_uris):
        raise RegistrationError(
            "each redirect URI must be an absolute https URI without a fragment", "invalid_redirect_uri"
        )
    if len(meta.allowed_origins) > MAX_URIS or not all(_origin_valid(o) for o in meta.allowed_origins):
        raise RegistrationError("each browser origin must be scheme://host[:port] (https)")
    if meta.launch_uri and (not meta.redirect_uris or not _redirect_uri_valid(meta.launch_uri)):
        raise RegistrationError(
            "a launch URL must be an absolute https URI without a fragment, of an app with a redirect URI"
        )
    scopes = meta.scope.split()
    if not all(scope_valid(s) for s in scopes):
        raise RegistrationError("scope holds a scope this server does not support")
    method = meta.token_endpoint_auth_method
    if method not in AuthMethod.values:
        raise RegistrationError("token_endpoint_auth_method must be none, client_secret_basic or private_key_jwt")
    if method == AuthMethod.NONE and not meta.redirect_uris:
        raise RegistrationError("a public client (none) signs people in: it needs a redirect URI")
    jwks = None
    if method == AuthMethod.PRIVATE_KEY_JWT:
        if bool(meta.jwks) == bool(meta.jwks_uri):
            raise RegistrationError("private_key_jwt needs exactly one of jwks and jwks_uri")
        if meta.jwks_uri and not (
            meta.jwks_uri.startswith("https://")
            or (settings.SMART_JWKS_URI_HTTP_ALLOWED and meta.jwks_uri.startswith("http://"))
        ):
            raise RegistrationError("jwks_uri must be https")
        if meta.jwks:
            try:
                jwks = jwks_parse(meta.jwks)
            except JwksUnavailable as exc:
                raise RegistrationError(f"jwks: {exc}") from exc
    return ClientMetadata(
        client_name=name,
        redirect_uris=list(meta.redirect_uris),
        token_endpoint_auth_method=method,
        scope=" ".join(scopes),
        jwks=jwks,
        jwks_uri=meta.jwks_uri if method == AuthMethod.PRIVATE_KEY_JWT else "",
        allowed_origins=list(meta.allowed_origins),
        launch_uri=meta.launch_uri,
    )


def client_register(*, owner: User, metadata: ClientMetadata, via: str) -> Registered:
    """Register a client owned by `owner` (a clinician); RegistrationError for metadata that cannot be."""
    if owner.role != Role.CLINICIAN or not owner.is_active:
        raise RegistrationError("only a clinician registers apps here", "access_denied")
    meta = _checked(metadata)
    public = meta.token_endpoint_auth_method == AuthMethod.NONE
    secret = None if public else generate_client_secret()
    with transaction.atomic():
        application = Application(
            name=meta.client_name,
            user=owner,
            client_type=Application.CLIENT_PUBLIC if public else Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=(
                Application.GRANT_AUTHORIZATION_CODE if meta.redirect_uris else Application.GRANT_CLIENT_CREDENTIALS
            ),
            redirect_uris=" ".join(meta.redirect_uris),
            allowed_origins=" ".join(meta.allowed_origins),
            skip_authorization=False,
        )
        if secret is not None:
            application.client_secret = secret  # hashed on save; the clear value is shown once
        application.save()
        ClientProfile.objects.create(
            application=application,
            auth_method=meta.token_endpoint_auth_method,
            jwks=meta.jwks,
            jwks_uri=meta.jwks_uri,
            launch_uri=meta.launch_uri,
            scope=meta.scope,
            registered_via=via,
        )
    # A client that authenticates with a signed JWT has no use for a secret: none is handed out.
    shown = secret if meta.token_endpoint_auth_method == AuthMethod.CLIENT_SECRET else None
    logger.info("client registered via=%s method=%s", via, meta.token_endpoint_auth_method)
    return Registered(application=application, client_secret=shown)


def client_delete(*, owner: User, client_id: str) -> bool:
    """Delete one of the owner's clients, and with it every token it holds."""
    deleted, _ = Application.objects.filter(user=owner, client_id=client_id).delete()
    return deleted > 0


def initial_access_token_create(*, owner: User) -> str:
    """A single-use RFC 7591 initial access token for `owner`; only its SHA-256 is kept."""
    token = secrets.token_urlsafe(32)
    expires = timezone.now() + timedelta(seconds=settings.SMART_INITIAL_ACCESS_TOKEN_SECONDS)
    InitialAccessToken.objects.create(owner=owner, checksum=_checksum(token), expires=expires)
    return token


def _initial_access_token_use(token: str) -> User | None:
    """The owner of a live, unused initial access token, marking it used; None otherwise."""
    if not token or len(token) > 512:
        return None
    with transaction.atomic():
        # Locked: two registrations racing with one token must not both succeed.
        row = (
            InitialAccessToken.objects.select_for_update()
            .select_related("owner")
            .filter(checksum=_checksum(token), used_at__isnull=True, expires__gt=timezone.now())
            .first()
        )
        if row is None:
            return None
        row.used_at = timezone.now()
        row.save(update_fields=["used_at"])
    return row.owner


def _registration_error(status: int, error: str, description: str) -> JsonResponse:
    return JsonResponse({"error": error, "error_description": description}, status=status)


def _metadata_from_json(body: Any) -> ClientMetadata:
    if not isinstance(body, dict):
        raise RegistrationError("the body must be a JSON object")

    def strings(name: str) -> list[str]:
        value = body.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RegistrationError(f"{name} must be a list of strings")
        return value

    grant_types = strings("grant_types")
    redirect_uris = strings("redirect_uris")
    if "client_credentials" in grant_types and redirect_uris:
        raise RegistrationError("a client is either a backend service (client_credentials) or signs people in")
    names = ("client_name", "scope", "jwks_uri", "token_endpoint_auth_method", "launch_uri")
    text = {k: body.get(k, "") for k in names}
    if not all(isinstance(v, str) for v in text.values()):
        raise RegistrationError(f"{', '.join(names)} must be strings")
    jwks = body.get("jwks")
    if jwks is not None and not isinstance(jwks, dict):
        raise RegistrationError("jwks must be a JSON Web Key Set object")
    return ClientMetadata(
        client_name=text["client_name"],
        redirect_uris=redirect_uris,
        token_endpoint_auth_method=text["token_endpoint_auth_method"] or AuthMethod.CLIENT_SECRET.value,
        scope=text["scope"],
        jwks=jwks,
        jwks_uri=text["jwks_uri"],
        allowed_origins=strings("allowed_origins"),
        launch_uri=text["launch_uri"],
    )


def client_metadata_document(registered: Registered) -> dict[str, Any]:
    """The RFC 7591 response for a registered client."""
    app = registered.application
    profile: ClientProfile = app.smart  # type: ignore[attr-defined]
    document: dict[str, Any] = {
        "client_id": app.client_id,
        "client_id_issued_at": int(app.created.timestamp()),
        "client_name": app.name,
        "redirect_uris": app.redirect_uris.split(),
        "grant_types": (
            ["authorization_code", "refresh_token"]
            if app.authorization_grant_type == Application.GRANT_AUTHORIZATION_CODE
            else ["client_credentials"]
        ),
        "token_endpoint_auth_method": profile.auth_method,
        "scope": profile.scope,
        "allowed_origins": app.allowed_origins.split(),
    }
    if profile.jwks:
        document["jwks"] = profile.jwks
    if profile.jwks_uri:
        document["jwks_uri"] = profile.jwks_uri
    if profile.launch_uri:
        document["launch_uri"] = profile.launch_uri
    if registered.client_secret is not None:
        document["client_secret"] = registered.client_secret
        document["client_secret_expires_at"] = 0
    return document


@csrf_exempt  # a bearer initial access token is the only credential: no cookie authority to forge
@require_http_methods(["POST"])
def dynamic_registration(request: HttpRequest) -> HttpResponse:
    """POST /oauth/register (RFC 7591), behind a clinician's initial access token."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        response = _registration_error(401, "invalid_token", "an initial access token is required")
        response["WWW-Authenticate"] = 'Bearer realm="registration"'
        return response
    if len(request.body) > MAX_BODY:
        return _registration_error(413, "invalid_client_metadata", "the registration request is too large")
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        return _registration_error(400, "invalid_client_metadata", "the body must be JSON")
    owner = _initial_access_token_use(token.strip())
    if owner is None:
        response = _registration_error(401, "invalid_token", "the initial access token is unknown, used or expired")
        response["WWW-Authenticate"] = 'Bearer realm="registration", error="invalid_token"'
        return response
    try:
        registered = client_register(owner=owner, metadata=_metadata_from_json(body), via="dcr")
    except RegistrationError as exc:
        return _registration_error(400, exc.error, str(exc))
    response = JsonResponse(client_metadata_document(registered), status=201)
    response["Cache-Control"] = "no-store"
    return response


def _page_refusal(request: HttpRequest) -> HttpResponse | None:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not user.is_verified() and user_has_device(user, confirmed=True):  # type: ignore[union-attr,attr-defined]
        return redirect_to_login(request.get_full_path())  # the second factor first, as on every page
    if user.role != Role.CLINICIAN:  # type: ignore[union-attr]
        return HttpResponse("This page is for clinicians.", status=403, content_type="text/plain")
    return None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", " ").split() if line.strip()]


def _metadata_from_form(data: Any) -> ClientMetadata:
    jwks_text = (data.get("jwks") or "").strip()
    try:
        jwks = json.loads(jwks_text) if jwks_text else None
    except ValueError as exc:
        raise RegistrationError("the JWKS must be JSON") from exc
    kind = data.get("client_kind", "")
    methods = {"public": AuthMethod.NONE, "confidential": AuthMethod.CLIENT_SECRET, "jwt": AuthMethod.PRIVATE_KEY_JWT}
    if kind not in methods:
        raise RegistrationError("choose how the app authenticates")
    if jwks is not None and not isinstance(jwks, dict):
        raise RegistrationError("the JWKS must be a JSON object")
    return ClientMetadata(
        client_name=data.get("client_name", ""),
        redirect_uris=_lines(data.get("redirect_uris", "")),
        token_endpoint_auth_method=methods[kind].value,
        scope=" ".join(_lines(data.get("scope", ""))),
        jwks=jwks,
        jwks_uri=(data.get("jwks_uri") or "").strip(),
        allowed_origins=_lines(data.get("allowed_origins", "")),
        launch_uri=(data.get("launch_uri") or "").strip(),
    )


@require_http_methods(["GET", "POST"])
def apps_page(request: HttpRequest) -> HttpResponse:
    """The clinician's apps: register one, see them, delete one, make an initial access token for RFC 7591."""
    refused = _page_refusal(request)
    if refused is not None:
        return refused
    user: User = request.user  # type: ignore[assignment]
    context: dict[str, Any] = {"nav": "apps", "form": request.POST if request.method == "POST" else {}}
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "register":
            try:
                registered = client_register(owner=user, metadata=_metadata_from_form(request.POST), via="portal")
            except RegistrationError as exc:
                context["error"], status = str(exc), 400
            else:
                context["registered"] = client_metadata_document(registered)
                context["form"] = {}
        elif action == "initial-access-token":
            context["initial_access_token"] = initial_access_token_create(owner=user)
        elif action == "delete":
            client_delete(owner=user, client_id=request.POST.get("client_id", ""))
        else:
            context["error"], status = "unknown action", 400
    context["apps"] = Application.objects.filter(user=user).select_related("smart").order_by("-created")
    context["registration_endpoint"] = request.build_absolute_uri("/oauth/register")
    context["fhir_base"] = request.build_absolute_uri("/fhir")
    response = render(request, "portal/smart_apps.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


page_patterns = [path("", apps_page, name="apps")]
