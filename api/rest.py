"""The JSON API beside FHIR (token introspection now; jobs and research later), described by OpenAPI.

Views here are DRF views, so drf-spectacular documents them (/api/schema/, /api/docs/).
Errors share one JSON problem shape: {"detail": "..."} with the HTTP status.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from oauth2_provider.models import Application
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from api.auth import BearerTokenAuthentication, TokenContext, token_context
from api.outcomes import RETRY_AFTER_SECONDS
from healthledger.errors import HealthLedgerError, ServiceUnavailable


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the project's rules: 413 for an oversized body, 503 + Retry-After when a service is down."""
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": "the request body is larger than this server accepts"}, status=413)
    if isinstance(exc, OperationalError | InterfaceError | ServiceUnavailable):
        retry = exc.retry_after if isinstance(exc, ServiceUnavailable) else RETRY_AFTER_SECONDS
        return Response({"detail": "a service this request needs is unavailable; retry later"}, status=503,
                        headers={"Retry-After": str(retry)})  # fmt: skip
    if isinstance(exc, HealthLedgerError):
        return Response({"detail": exc.message}, status=exc.status)
    return drf_exception_handler(exc, context)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents BearerTokenAuthentication as OAuth2 bearer tokens (from /oauth/token/)."""

    target_class = "api.auth.BearerTokenAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}


class IntrospectRequest(serializers.Serializer):  # type: ignore[type-arg]
    token = serializers.CharField(max_length=512, help_text="An access token issued to the calling user")


class IntrospectResponse(serializers.Serializer):  # type: ignore[type-arg]
    active = serializers.BooleanField()
    scope = serializers.CharField(required=False, help_text="Space-separated SMART scopes")
    client_id = serializers.CharField(required=False, allow_blank=True)
    username = serializers.CharField(required=False)
    sub = serializers.CharField(required=False, help_text="The acting user's id")
    fhirUser = serializers.CharField(required=False, help_text="The acting user, as a reference")
    exp = serializers.IntegerField(required=False, help_text="Expiry, seconds since the epoch")
    token_type = serializers.CharField(required=False)
    purpose_of_use = serializers.CharField(required=False, allow_blank=True)
    grant_type = serializers.CharField(required=False)


def _describe(context: TokenContext) -> dict[str, Any]:
    client_id = ""
    if context.application_id is not None:
        client_id = (
            Application.objects.filter(pk=context.application_id).values_list("client_id", flat=True).first() or ""
        )
    return {
        "active": True,
        "scope": " ".join(context.scopes.raw),
        "client_id": client_id,
        "username": context.user.get_username(),
        "sub": str(context.user.pk),
        "fhirUser": f"urn:healthledger:user:{context.user.pk}",
        "exp": int(context.expires.timestamp()),
        "token_type": "Bearer",
        "purpose_of_use": context.purpose,
        "grant_type": "client_credentials" if context.client_credentials else "authorization_code",
    }


class TokenIntrospectView(APIView):
    """RFC 7662-style introspection of one's own tokens: active, scopes, expiry, bound purpose of use.

    A token of another user, or one that is unknown, expired or revoked, is {"active": false}:
    introspection never tells whose a token is.
    """

    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=IntrospectRequest,
        responses={200: IntrospectResponse},
        summary="Introspect an access token of the calling user",
        tags=["oauth"],
    )
    def post(self, request: Request) -> Response:
        asked = IntrospectRequest(data=request.data)
        asked.is_valid(raise_exception=True)
        context = token_context(asked.validated_data["token"])
        if context is None or context.user.pk != request.user.pk:
            return Response({"active": False}, status=status.HTTP_200_OK)
        return Response(_describe(context), status=status.HTTP_200_OK)
