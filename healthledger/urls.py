from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from api.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # The FHIR API (/fhir), OAuth2 (/oauth) and the JSON API with its OpenAPI docs (/api).
    path("", include("api.urls")),
    # The patient portal owns the site root; keep it last so every other prefix wins.
    path("", include("portal.urls")),
]
