"""The WSGI app bench_api runs under gunicorn: the project's URLs plus the bench's comparison endpoints.

The comparison endpoints use the same bearer authentication as the FHIR API:
- bare:   a DRF APIView that looks the resource row up and returns the stored plaintext bytes
          (loaded once from BENCH_API_PLAINTEXT): no consent decision, no decrypt, no log.
- stock:  a stock DRF RetrieveAPIView with a ModelSerializer of the same resource row.
- bare-search: the same 100 Observation rows fetched, the searchset bytes served as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthledger.settings")

from django.conf import settings

# The comparison endpoints are token-authenticated APIs too: the same middleware steps aside for them.
settings.API_PATH_PREFIXES = [*settings.API_PATH_PREFIXES, "/bench/"]
application = get_wsgi_application()

from django.http import HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from rest_framework import generics, serializers  # noqa: E402
from rest_framework.permissions import IsAuthenticated  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from api.auth import BearerTokenAuthentication  # noqa: E402
from records.models import Resource  # noqa: E402

_PLAINTEXT = Path(os.environ.get("BENCH_API_PLAINTEXT", "/nonexistent"))
_SEARCHSET = Path(os.environ.get("BENCH_API_SEARCHSET", "/nonexistent"))
READ_BYTES = _PLAINTEXT.read_bytes() if _PLAINTEXT.exists() else b"{}"
SEARCH_BYTES = _SEARCHSET.read_bytes() if _SEARCHSET.exists() else b"{}"


class _Authenticated(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]


class BareRead(_Authenticated):
    def get(self, request: Request, resource_type: str, resource_id: str) -> HttpResponse:
        row = Resource.objects.filter(resource_type=resource_type, fhir_id=resource_id).values_list("pk").first()
        if row is None:
            return HttpResponse(status=404)
        return HttpResponse(READ_BYTES, content_type="application/fhir+json")


class ResourceSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Resource
        fields = ["id", "patient", "resource_type", "fhir_id", "current_version", "updated_at"]


class StockRead(generics.RetrieveAPIView):  # type: ignore[type-arg]
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]
    serializer_class = ResourceSerializer
    lookup_field = "fhir_id"
    lookup_url_kwarg = "resource_id"

    def get_queryset(self):  # type: ignore[no-untyped-def]
        # Not the current version's ciphertext the row carries for searches: the serializer shows none of it, and
        # loading it would slow this variant down and flatter the gated read's ratio to it.
        return Resource.objects.filter(resource_type=self.kwargs["resource_type"]).defer(
            "current_ciphertext", "current_wrapped_data_key"
        )


class BareSearch(_Authenticated):
    def get(self, request: Request, resource_type: str) -> HttpResponse:
        patient = request.query_params.get("patient", "")
        rows = list(
            Resource.objects.filter(resource_type=resource_type, patient__fhir_id=patient).values_list("pk")[:100]
        )
        return HttpResponse(SEARCH_BYTES if rows else b"{}", content_type="application/fhir+json")


urlpatterns = [
    path("bench/bare/<str:resource_type>/<str:resource_id>", BareRead.as_view()),
    path("bench/stock/<str:resource_type>/<str:resource_id>", StockRead.as_view()),
    path("bench/bare-search/<str:resource_type>", BareSearch.as_view()),
    path("", include("healthledger.urls")),
]
settings.ROOT_URLCONF = __name__
