"""SMART routes: the Practitioner a clinician's `fhirUser` names (under /fhir), ahead of the generic routes."""

from __future__ import annotations

from django.urls import URLPattern, re_path

from api.smart import PRACTITIONER_PREFIX, practitioner_read

urlpatterns: list[URLPattern] = [
    re_path(rf"^Practitioner/{PRACTITIONER_PREFIX}(?P<user_pk>[0-9]{{1,18}})$", practitioner_read),
]
