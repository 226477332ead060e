"""SMART App Launch 2.x on top of django-oauth-toolkit: patient context, id_token with fhirUser, discovery.

- `launch/patient` (and any `patient/` scope) needs a patient in context. A patient signing in
  has their own record; a clinician picks one, at authorization, from the patients whose live
  grants name them (the picker). The choice travels with the code (LaunchGrant), then with the
  token (TokenLaunch), and comes back as `patient` in the token response. A token with a patient
  in context reaches that record only: the gate denies every other (consent.pdp, patient_context).
- `openid fhirUser` yields an id_token signed RS256 with the server's key (api.signing_key),
  whose `fhirUser` is the Patient or Practitioner this server serves at that URL; its JWKS is
  published at /oauth/jwks.
- The authorization request's `aud` must be this server's FHIR base (api.oauth).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from jwcrypto import jwk, jwt
from oauth2_provider.models import AccessToken, Application

from accounts.models import Role, User
from api.access import fhir_endpoint
from api.auth import TokenContext
from api.ehr_launch import LaunchInvalid, asked_launch, ehr_launch_refused, launch_consume, launch_invalid, launch_peek
from api.oauth import SmartAuthorizationView, SmartValidator
from api.outcomes import FHIR_CONTENT_TYPE
from api.signing_key import public_jwks, signing_key
from api.smart_context import display_name, launch_patient_choose, launch_patients, needs_patient, own_record
from api.smart_models import LaunchGrant, TokenLaunch
from healthledger.errors import ResourceNotFound
from records.models import Patient

LAUNCH_FIELD = "launch_patient"
PRACTITIONER_PREFIX = "user-"


def fhir_user_reference(user: User) -> str | None:
    """`Patient/<id>` for a patient with a record, `Practitioner/user-<pk>` for a clinician; None otherwise."""
    if user.role == Role.CLINICIAN:
        return f"Practitioner/{PRACTITIONER_PREFIX}{user.pk}"
    record = own_record(user)
    return f"Patient/{record.fhir_id}" if record is not None else None


def _origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


class _HeadersRequest(HttpRequest):
    """A Django request rebuilt from an oauthlib request's headers (DOT passes Django's META as headers)."""

    def __init__(self, headers: Any) -> None:
        super().__init__()
        self.META = dict(headers)
        self._secure = bool(self.META.get("X_DJANGO_OAUTH_TOOLKIT_SECURE"))

    def _get_scheme(self) -> str:
        return "https" if self._secure else "http"


def request_origin(request: Any) -> str:
    """scheme://host of the Django request behind an oauthlib request (whose `uri` is a path only)."""
    return _HeadersRequest(request.headers).build_absolute_uri("/").rstrip("/")


SMART_CAPABILITIES = (
    "launch-standalone",
    "launch-ehr",
    "context-ehr-patient",
    "context-standalone-patient",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "permission-patient",
    "permission-user",
    "permission-offline",
    "permission-online",
    "permission-v1",
    "permission-v2",
    "authorize-post",
)


def smart_configuration_document(origin: str) -> dict[str, Any]:
    """.well-known/smart-configuration for a server reached at `origin`: exactly what is supported."""
    from api.scopes import PLAIN_SCOPES

    return {
        "issuer": origin,
        "jwks_uri": f"{origin}/oauth/jwks",
        "authorization_endpoint": f"{origin}/oauth/authorize/",
        "token_endpoint": f"{origin}/oauth/token/",
        "revocation_endpoint": f"{origin}/oauth/revoke_token/",
        "introspection_endpoint": f"{origin}/api/token/introspect",
        "userinfo_endpoint": f"{origin}/oauth/userinfo/",
        "registration_endpoint": f"{origin}/oauth/register",
        "management_endpoint": f"{origin}/clinician/apps",
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": [
            *sorted(PLAIN_SCOPES),
            "patient/*.cruds",
            "user/*.cruds",
            "system/*.cruds",
            "patient/*.rs",
            "user/*.rs",
            "system/*.rs",
        ],
        "response_types_supported": ["code"],
        "capabilities": list(SMART_CAPABILITIES),
    }


class PatientNeeded(Exception):
    """The clinician has not (validly) picked the patient the requested scopes need."""


class SmartLaunchValidator(SmartValidator):
    """SmartValidator plus SMART launch context, RS256 id_tokens with fhirUser, and client assertions."""

    oidc_claim_scope = {**SmartValidator.oidc_claim_scope, "fhirUser": "fhirUser"}

    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        from api.backend_services import ASSERTION_TYPE, client_assertion_authenticate

        if getattr(request, "client_assertion_type", None) or getattr(request, "client_assertion", None):
            if request.client_assertion_type != ASSERTION_TYPE:
                return False
            client = client_assertion_authenticate(
                assertion=str(request.client_assertion or ""),
                token_endpoint=request_origin(request) + urlsplit(request.uri).path,
            )
            if client is None:
                return False
            request.client = client
            request.client_id = client.client_id
            return True
        return bool(super().authenticate_client(request, *args, **kwargs))

    def validate_scopes(self, client_id: str, scopes: list[str], client: Any, request: Any, *a: Any, **k: Any) -> bool:
        from api.backend_services import scopes_allowed

        if not super().validate_scopes(client_id, scopes, client, request, *a, **k):
            return False
        if not scopes_allowed(client=client, scopes=scopes):
            return False
        owner = getattr(client, "user", None)
        if request.grant_type == "client_credentials":
            # No one signs in to launch anything: launch scopes are dropped from the grant (clients such as
            # fhirclient send launch/patient by default), and patient/ scopes need a patient in context,
            # which only a patient's own client has.
            request.scopes = [s for s in scopes if s not in ("launch", "launch/patient")]
            if needs_patient(request.scopes):
                return owner is not None and owner.role == Role.PATIENT
        return True

    def _create_authorization_code(self, request: Any, code: Any, expires: Any = None) -> Any:
        grant = super()._create_authorization_code(request, code, expires)
        patient_pk = getattr(request, "smart_patient", None)
        if patient_pk:
            LaunchGrant.objects.create(grant=grant, patient_id=patient_pk)
        return grant

    def validate_code(self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        valid = bool(super().validate_code(client_id, code, client, request, *args, **kwargs))
        if valid:
            request.smart_patient = (
                LaunchGrant.objects.filter(grant__code=code, grant__application=client)
                .values_list("patient_id", flat=True)
                .first()
            )
        return valid

    def _save_bearer_token(self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any) -> Any:
        patient_pk = getattr(request, "smart_patient", None)
        previous = getattr(request, "refresh_token_instance", None)
        if patient_pk is None and previous is not None and getattr(previous, "access_token_id", None):
            # Read before the rotation deletes the old access token and its launch context.
            patient_pk = (
                TokenLaunch.objects.filter(access_token_id=previous.access_token_id)
                .values_list("patient_id", flat=True)
                .first()
            )
        saved = super()._save_bearer_token(token, request, *args, **kwargs)
        scopes = token.get("scope", "") or " ".join(getattr(request, "scopes", None) or [])
        if patient_pk is None and needs_patient(scopes) and request.user is not None:
            record = own_record(request.user)
            patient_pk = record.pk if record is not None else None
        if patient_pk is None and needs_patient(scopes) and request.grant_type == "client_credentials":
            record = own_record(request.client.user)  # a patient's own client-credentials token
            patient_pk = record.pk if record is not None else None
        if patient_pk is not None:
            access = AccessToken.objects.filter(token_checksum=_checksum(token["access_token"])).first()
            patient = Patient.objects.filter(pk=patient_pk).only("fhir_id").first()
            if access is not None and patient is not None:
                TokenLaunch.objects.update_or_create(access_token=access, defaults={"patient": patient})
                token["patient"] = patient.fhir_id
                token["need_patient_banner"] = True
        return saved

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        reference = fhir_user_reference(request.user)
        if reference is None:
            return {}
        return {"fhirUser": f"{request_origin(request)}/fhir/{reference}"}

    def get_oidc_issuer_endpoint(self, request: Any) -> str:
        # The issuer .well-known/smart-configuration names: this server's origin.
        return request_origin(request)

    def _get_key_for_token(self, token: str) -> jwk.JWK:
        # Every id_token this server issued is RS256 under its one key (finalize_id_token).
        return signing_key()

    def finalize_id_token(self, id_token: dict[str, Any], token: Any, token_handler: Any, request: Any) -> str:
        """Every id_token is RS256 with the server's key, whatever algorithm the application row names."""
        claims, expiration_time = self.get_id_token_dictionary(token, token_handler, request)
        id_token.update(**claims)
        if "nonce" not in id_token and request.nonce:
            id_token["nonce"] = request.nonce
        key = signing_key()
        header = {"typ": "JWT", "alg": "RS256", "kid": key["kid"]}
        signed = jwt.JWT(header=json.dumps(header), claims=json.dumps(id_token, default=str))
        signed.make_signed_token(key)
        with transaction.atomic():
            saved = self._save_id_token(id_token["jti"], request, expiration_time)
        request.access_token = saved
        request.id_token = saved
        return str(signed.serialize())


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SmartLaunchAuthorizationView(SmartAuthorizationView):
    """The authorization endpoint with SMART's patient picker for a clinician whose scopes need a patient."""

    template_name = "portal/smart_authorize.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = ehr_launch_refused(request)
        if refused is not None:
            return refused
        try:
            return super().get(request, *args, **kwargs)
        except PatientNeeded:
            # Asked before any code was made (DOT's skip-authorization path): show the approval page with the picker.
            return self._picker_page()
        except LaunchInvalid:
            return launch_invalid()

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().post(request, *args, **kwargs)
        except PatientNeeded:
            return self._picker_page(error="Choose one of the patients listed.")
        except LaunchInvalid:
            return launch_invalid()

    def _picker_page(self, error: str = "") -> HttpResponse:
        data = dict(getattr(self, "oauth2_data", {}) or {})
        if not data:  # a POST: the form carries what the GET showed
            form = self.get_form(self.get_form_class())
            form.is_valid()
            data = {**form.cleaned_data, "scopes": (form.cleaned_data.get("scope") or "").split()}
            application = Application.objects.filter(client_id=data.get("client_id", "")).first()
            data["application"] = application
        data["form"] = self.get_form(self.get_form_class())
        data["launch_error"] = error
        return self.render_to_response(self.get_context_data(**data), status=400 if error else 200)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        user = self.request.user
        scopes = kwargs.get("scopes") or []
        launch = asked_launch(self.request, scopes)
        if launch:
            client_id = kwargs.get("client_id") or self.request.GET.get("client_id", "")
            patient = launch_peek(launch=launch, user=user, client_id=client_id)
            context["ehr_launch"] = launch
            context["ehr_patient_name"] = display_name(patient) if patient is not None else ""
        elif getattr(user, "role", None) == Role.CLINICIAN and needs_patient(scopes):
            context["launch_patients"] = launch_patients(user=user)  # type: ignore[arg-type]
            context["launch_field"] = LAUNCH_FIELD
        return context

    def create_authorization_response(
        self, request: HttpRequest, scopes: str, credentials: dict[str, Any], allow: bool
    ) -> Any:
        user: User = request.user  # type: ignore[assignment]
        launch = asked_launch(request, scopes) if allow else None
        if launch is not None:
            # The EHR launch names the patient: used up here, once, with the grant checked again.
            patient = launch_consume(launch=launch, user=user, client_id=credentials.get("client_id", ""))
            if patient is None:
                raise LaunchInvalid
            credentials = {**credentials, "smart_patient": patient.pk}
        elif allow and needs_patient(scopes):
            if user.role == Role.CLINICIAN:
                chosen = request.POST.get(LAUNCH_FIELD) or ""
                patient = launch_patient_choose(user=user, fhir_id=chosen) if chosen else None
                if patient is None:
                    raise PatientNeeded
                credentials = {**credentials, "smart_patient": patient.pk}
            else:
                record = own_record(user)
                if record is not None:
                    credentials = {**credentials, "smart_patient": record.pk}
        return super().create_authorization_response(request, scopes, credentials, allow)


def jwks(request: HttpRequest) -> HttpResponse:
    """GET /oauth/jwks: the public keys that verify this server's id_tokens."""
    response = JsonResponse(public_jwks())
    response["Cache-Control"] = "public, max-age=3600"
    return response


@fhir_endpoint("GET", "HEAD")
def practitioner_read(request: HttpRequest, context: TokenContext, user_pk: str) -> HttpResponse:
    """GET /fhir/Practitioner/user-<pk>: the clinician a token's `fhirUser` names, to that clinician only."""
    user = context.user
    if user.role != Role.CLINICIAN or str(user.pk) != user_pk:
        raise ResourceNotFound("resource not found")  # another clinician's entry: as if it did not exist
    name = user.get_full_name().strip() or user.username
    resource = {
        "resourceType": "Practitioner",
        "id": f"{PRACTITIONER_PREFIX}{user.pk}",
        "active": True,
        "identifier": [
            {"system": f"{_origin_of(request.build_absolute_uri())}/fhir/sid/username", "value": user.username}
        ],
        "name": [{"text": name}],
    }
    return HttpResponse(json.dumps(resource), content_type=FHIR_CONTENT_TYPE)
