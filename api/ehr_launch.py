"""SMART EHR launch: a clinician opens a registered app from a patient's page, and the app gets that patient.

    GET|POST /clinician/apps/launch/<patient>/    the clinician's apps that have a launch URL; POST opens one

Opening an app makes an opaque `launch` id, bound to the clinician, the app and the patient (a patient
whose live grant names the clinician), kept as a SHA-256 only, usable once and for LAUNCH_SECONDS. The
browser goes to the app's launch URL with `iss` (this FHIR base) and `launch`; the app asks the
authorization endpoint for the `launch` scope with that `launch` parameter. The id is checked when the
request arrives (an unknown, used, expired, another clinician's or another app's id is a 400) and used
up when the code is made; the patient's grant is checked again then. The code carries the patient
(LaunchGrant), the token carries it too (TokenLaunch), and the token response names it in `patient`.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_http_methods
from oauth2_provider.models import Application

from accounts.models import User
from api.fhir.bundles import base_url
from api.oauth import _oauth_error
from api.registration import _page_refusal
from api.smart_context import launch_patients
from api.smart_models import EhrLaunch
from records.models import Patient

logger = logging.getLogger(__name__)

LAUNCH_SCOPE = "launch"
LAUNCH_PARAMETER = "launch"
LAUNCH_SECONDS = 300
MAX_LAUNCH = 128


class LaunchRefused(Exception):
    """An EHR launch that cannot be made or used; the message says why, in plain words."""


def _checksum(launch: str) -> str:
    return hashlib.sha256(launch.encode("utf-8")).hexdigest()


def _granted_patient(user: User, patient_id: uuid.UUID) -> Patient | None:
    """The patient, when a live grant names the clinician on them now; None otherwise."""
    return next((p for p, _ in launch_patients(user=user) if p.pk == patient_id), None)


def launch_create(*, clinician: User, patient_id: uuid.UUID, client_id: str, fhir_base: str) -> str:
    """Open one of the clinician's apps for a patient they hold a live grant on: the app's launch URL to go to."""
    application = Application.objects.filter(user=clinician, client_id=client_id).select_related("smart").first()
    profile = getattr(application, "smart", None) if application is not None else None
    if application is None or profile is None or not profile.launch_uri:
        raise LaunchRefused("this app has no launch URL")
    patient = _granted_patient(clinician, patient_id)
    if patient is None:
        raise LaunchRefused("no live grant from this patient names you")
    launch = secrets.token_urlsafe(32)
    EhrLaunch.objects.create(
        checksum=_checksum(launch),
        clinician=clinician,
        application=application,
        patient=patient,
        expires=timezone.now() + timedelta(seconds=LAUNCH_SECONDS),
    )
    separator = "&" if urlsplit(profile.launch_uri).query else "?"
    return f"{profile.launch_uri}{separator}{urlencode({'iss': fhir_base, 'launch': launch})}"


def _pending(launch: str, user: Any, client_id: str) -> QuerySet[EhrLaunch]:
    if not launch or len(launch) > MAX_LAUNCH or not getattr(user, "pk", None):
        return EhrLaunch.objects.none()
    return EhrLaunch.objects.filter(
        checksum=_checksum(launch),
        clinician_id=user.pk,
        application__client_id=client_id,
        used_at__isnull=True,
        expires__gt=timezone.now(),
    )


def launch_peek(*, launch: str, user: Any, client_id: str) -> Patient | None:
    """The patient of a launch this user and app may still use, without using it up; None otherwise."""
    row = _pending(launch, user, client_id).only("patient_id").first()
    return _granted_patient(user, row.patient_id) if row is not None else None


def launch_consume(*, launch: str, user: Any, client_id: str) -> Patient | None:
    """Use a launch up (once) and return its patient, whose grant must still be live; None otherwise."""
    with transaction.atomic():
        # Locked: two authorizations racing with one launch id, only the first gets its patient.
        row = _pending(launch, user, client_id).select_for_update().first()
        if row is None:
            logger.info("EHR launch refused: unknown, used, expired or not this clinician's and app's")
            return None
        row.used_at = timezone.now()
        row.save(update_fields=["used_at"])
    return _granted_patient(user, row.patient_id)


def asked_launch(request: HttpRequest, scopes: str | list[str]) -> str | None:
    """The `launch` parameter of an authorization request that asks for the `launch` scope; None without it."""
    names = scopes.split() if isinstance(scopes, str) else scopes
    if LAUNCH_SCOPE not in names:
        return None
    return request.POST.get(LAUNCH_PARAMETER) or request.GET.get(LAUNCH_PARAMETER) or ""


class LaunchInvalid(Exception):
    """An EHR launch (`launch` scope) whose `launch` id is unknown, used, expired, or not this user's and app's."""


def launch_invalid() -> HttpResponse:
    # Not sent back to the app's redirect URI: a launch id that does not hold is not the app's to retry with.
    return _oauth_error(400, "invalid_request", "launch: unknown, already used, expired, or not for this app and user")


def ehr_launch_refused(request: HttpRequest) -> HttpResponse | None:
    """At the authorization request: a `launch` scope needs a `launch` id this user and app may still use."""
    launch = asked_launch(request, request.GET.get("scope", ""))
    if launch is None:
        return None
    patient = launch_peek(launch=launch, user=request.user, client_id=request.GET.get("client_id", ""))
    return launch_invalid() if patient is None else None


@require_http_methods(["GET", "POST"])
def launch_page(request: HttpRequest, patient_id: uuid.UUID) -> HttpResponse:
    """The clinician's apps with a launch URL, for one patient; POST opens one (302 to its launch URL)."""
    refused = _page_refusal(request)
    if refused is not None:
        return refused
    user: User = request.user  # type: ignore[assignment]
    patient = _granted_patient(user, patient_id)
    if patient is None:
        return HttpResponse("No live grant from this patient names you.", status=404, content_type="text/plain")
    context: dict[str, Any] = {"nav": "apps", "patient": patient}
    status = 200
    if request.method == "POST":
        try:
            url = launch_create(
                clinician=user,
                patient_id=patient.pk,
                client_id=request.POST.get("client_id", ""),
                fhir_base=base_url(request),
            )
        except LaunchRefused as exc:
            context["error"], status = str(exc), 400
        else:
            return HttpResponseRedirect(url)
    context["patient_name"] = dict(launch_patients(user=user)).get(patient, f"Patient {patient.fhir_id}")
    context["apps"] = Application.objects.filter(user=user, smart__launch_uri__gt="").order_by("name")
    response = render(request, "portal/smart_launch.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


page_patterns = [path("<uuid:patient_id>/", launch_page, name="launch")]
