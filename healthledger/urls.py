from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from api.ehr_launch import page_patterns as ehr_launch_pages
from api.health import healthz
from api.registration import page_patterns as app_registration_pages

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # The FHIR API (/fhir), OAuth2 (/oauth) and the JSON API with its OpenAPI docs (/api); before admin/, whose
    # resolver would otherwise raise (no match) on every API request first.
    path("", include("api.urls")),
    path("admin/", admin.site.urls),
    # A clinician registers SMART apps and makes RFC 7591 initial access tokens (api/registration.py).
    path("clinician/apps/", include((app_registration_pages, "smart_apps"))),
    # A clinician opens an app from a patient's page: a SMART EHR launch (api/ehr_launch.py).
    path("clinician/apps/launch/", include((ehr_launch_pages, "ehr_launch"))),
    # The patient portal owns the site root; keep it last so every other prefix wins.
    path("", include("portal.urls")),
]

# Under /fhir every error is an OperationOutcome, even one Django raises before a view runs;
# elsewhere these render the portal's 400/403/404/500 pages.
handler400 = "api.handlers.bad_request"
handler403 = "api.handlers.permission_denied"
handler404 = "api.handlers.page_not_found"
handler500 = "api.handlers.server_error"
