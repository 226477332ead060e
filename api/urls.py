"""The API's URLs: FHIR under /fhir, OAuth2 under /oauth, the JSON API and its OpenAPI docs under /api.

To add FHIR endpoints from another module (operations such as Patient/{id}/$diagnose, or
types served elsewhere such as Task), add its url patterns to FHIR_EXTENSIONS: they are matched
before the generic <type> and <type>/<id> routes, which would otherwise take them. They are
spliced in as patterns, not included: an include() that does not match raises and records what
it tried, and every record read and search under /fhir passed four of them on its way.
"""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, include, path, re_path, register_converter
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from oauth2_provider.views import UserInfoView

from api import fhir_diagnostics, research_fhir, smart_urls
from api.access import fhir_endpoint
from api.fhir import audit_events, bulk, capability, consents, operations, patch, records
from api.fhir.records.base import RECORD_TYPES
from api.oauth import OwnTokensIntrospectView, SmartRevokeTokenView, SmartTokenView
from api.outcomes import NotSupported
from api.registration import dynamic_registration
from api.rest import TokenIntrospectView
from api.smart import SmartLaunchAuthorizationView, jwks
from healthledger.errors import ResourceNotFound

TYPE_NAME, FHIR_ID = r"[A-Z][A-Za-z]{1,63}", r"[A-Za-z0-9\-.]{1,64}"
TYPE = rf"(?P<resource_type>{TYPE_NAME})"
ID = rf"(?P<resource_id>{FHIR_ID})"
PATIENT_ID = r"(?P<patient_id>[A-Za-z0-9\-.]{1,64})"
DEFINITION_ID = r"(?P<definition_id>[A-Za-z0-9\-.]{1,64})"

# Other modules' FHIR routes: each module's urlpatterns, spliced in (not include()d, see above).
FHIR_EXTENSIONS: list[URLPattern | URLResolver] = [
    *fhir_diagnostics.urlpatterns,  # Patient/{id}/$diagnose, Task
    *bulk.urlpatterns,  # $export, its status and files, Group, Patient/{id}/$everything
    *smart_urls.urlpatterns,  # Practitioner/user-<pk>: what a clinician's fhirUser names
    *research_fhir.urlpatterns,  # ResearchStudy, ResearchSubject
]


@csrf_exempt  # bearer tokens only: no ambient (cookie) authority to forge
def resource_type_endpoint(request: HttpRequest, resource_type: str) -> HttpResponse:
    """GET (and HEAD) searches the type, POST creates an instance of it."""
    if request.method == "POST":
        return records.resource_create(request, resource_type=resource_type)
    if request.method in ("GET", "HEAD"):
        return records.resource_search(request, resource_type=resource_type)
    return _unsupported(request)


@csrf_exempt  # bearer tokens only: no ambient (cookie) authority to forge
def resource_instance_endpoint(request: HttpRequest, resource_type: str, resource_id: str) -> HttpResponse:
    """GET (and HEAD) reads the resource, PUT updates it, PATCH applies a JSON Patch to it."""
    if request.method == "PUT":
        return records.resource_update(request, resource_type=resource_type, resource_id=resource_id)
    if request.method == "PATCH":
        return patch.resource_patch(request, resource_type=resource_type, resource_id=resource_id)
    return records.resource_read(request, resource_type=resource_type, resource_id=resource_id)


@fhir_endpoint("GET", "POST", authenticated=False)
def _unsupported(request: HttpRequest, context: None, **kwargs: object) -> HttpResponse:
    raise NotSupported(f"{request.method} is not supported here", status=405, allow="GET, POST")


@fhir_endpoint("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", authenticated=False)
def fhir_not_found(request: HttpRequest, context: None, **kwargs: object) -> HttpResponse:
    raise ResourceNotFound("resource not found")


class _UnclaimedType:
    """A record type no route before the generic ones names (see _claimed): its search and read may skip them."""

    regex = TYPE_NAME

    def to_python(self, value: str) -> str:
        if value not in _UNCLAIMED:
            raise ValueError(value)  # not this route's: resolution goes on to the routes in order
        return value

    def to_url(self, value: str) -> str:
        return value


class _Id:
    regex = FHIR_ID

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(_UnclaimedType, "unclaimed_type")
register_converter(_Id, "fhir_id")

_UNCLAIMED: frozenset[str] = frozenset()  # set below, once the routes it depends on are listed


def _claimed(patterns: list[URLPattern | URLResolver]) -> frozenset[str]:
    """The names that routes' paths begin with (Group, Task, Patient, Consent...): a type named by one may have a
    route of its own before the generic ones, so none of its paths take the shortcut."""
    leading = (re.match(r"\^?([A-Za-z]+)", str(pattern.pattern)) for pattern in patterns)
    return frozenset(found.group(1) for found in leading if found)


_routes: list[URLPattern | URLResolver] = [
    path("", records.transaction, name="fhir-base-slash"),
    path("metadata", capability.metadata, name="fhir-metadata"),
    path(".well-known/smart-configuration", capability.smart_configuration, name="fhir-smart-configuration"),
    re_path(rf"^SearchParameter/{DEFINITION_ID}$", capability.search_parameter_read),
    re_path(rf"^OperationDefinition/{DEFINITION_ID}$", operations.operation_definition_read),
    path("Consent", consents.consent_search, name="fhir-consent-search"),
    re_path(rf"^Consent/{ID}$", consents.consent_read, name="fhir-consent-read"),
    path("AuditEvent", audit_events.audit_event_search, name="fhir-auditevent-search"),
    re_path(rf"^AuditEvent/{ID}$", audit_events.audit_event_read, name="fhir-auditevent-read"),
    *FHIR_EXTENSIONS,
]
_UNCLAIMED = RECORD_TYPES - _claimed(_routes)
# The record routes of a type no other route names, first: a search or read (most of what /fhir serves) then
# matches at once, not after every route above; any other path goes on to them, in order, as before.
SHORTCUTS: list[URLPattern | URLResolver] = [
    path("<unclaimed_type:resource_type>", resource_type_endpoint),
    path("<unclaimed_type:resource_type>/<fhir_id:resource_id>", resource_instance_endpoint),
]
fhir_patterns: list[URLPattern | URLResolver] = [
    *SHORTCUTS,
    *_routes,
    re_path(rf"^{TYPE}$", resource_type_endpoint, name="fhir-type"),
    re_path(rf"^{TYPE}/_search$", records.resource_search_post, name="fhir-type-search"),
    re_path(rf"^Patient/{PATIENT_ID}/{TYPE}$", records.compartment_search, name="fhir-compartment-search"),
    re_path(rf"^{TYPE}/{ID}$", resource_instance_endpoint, name="fhir-read"),
    re_path(rf"^{TYPE}/{ID}/_history$", records.resource_history, name="fhir-history"),
    re_path(rf"^{TYPE}/{ID}/_history/(?P<version>[0-9]{{1,10}})$", records.resource_vread, name="fhir-vread"),
    re_path(r"^.*$", fhir_not_found),
]

oauth_patterns = [
    path("authorize/", SmartLaunchAuthorizationView.as_view(), name="authorize"),
    path("jwks", jwks, name="jwks-info"),
    path("register", dynamic_registration, name="register"),
    path("token/", SmartTokenView.as_view(), name="token"),
    path("revoke_token/", SmartRevokeTokenView.as_view(), name="revoke-token"),
    # OpenID Connect UserInfo (DOT's): `sub` and, with the fhirUser scope, the token's fhirUser URL.
    path("userinfo/", UserInfoView.as_view(), name="user-info"),
    path("introspect/", OwnTokensIntrospectView.as_view(), name="introspect"),
]

api_patterns = [
    path("token/introspect", TokenIntrospectView.as_view(), name="api-token-introspect"),
    path("research/", include("api.research")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("fhir", records.transaction, name="fhir-base"),
    path("fhir/", include(fhir_patterns)),
    path("oauth/", include((oauth_patterns, "oauth2_provider"))),
    path("api/", include(api_patterns)),
]
