"""What every portal view shares: who may open it, and how domain errors become friendly pages.

A view is wrapped by `patient_page`, `clinician_page` or `steward_page`: signed in (and past the
second factor when the user has one), the right role, and for patients their own
record attached. Domain errors become the same friendly page every time; their
messages are written without PHI (healthledger.errors), and a 5xx shows none.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role, User
from consent.gate import Caller
from healthledger.errors import HealthLedgerError, KeyDestroyed, ResourceNotFound, ServiceUnavailable
from portal.models import Preference
from portal.services import patient_record_ensure, time_zone_valid, totp_confirmed_device
from records.models import Patient

logger = logging.getLogger(__name__)

View = Callable[..., HttpResponse]


def client_address(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is set by the client unless a trusted proxy rewrites it.
    return request.META.get("REMOTE_ADDR") or None


def error_page(request: HttpRequest, *, status: int, title: str, message: str) -> HttpResponse:
    response = render(request, "portal/error.html", {"title": title, "message": message}, status=status)
    return response


def domain_error_page(request: HttpRequest, exc: HealthLedgerError) -> HttpResponse:
    if isinstance(exc, ResourceNotFound):
        return error_page(request, status=404, title="Not found", message="There is nothing here for you.")
    if isinstance(exc, KeyDestroyed):
        return error_page(
            request,
            status=410,
            title="This record was erased",
            message="The key of this record was destroyed, so its contents can never be read again.",
        )
    if isinstance(exc, ServiceUnavailable):
        response = error_page(
            request,
            status=503,
            title="Please try again shortly",
            message="A service this page needs is not answering right now. Nothing was changed.",
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    if exc.status >= 500:
        logger.error("portal: %s on %s", type(exc).__name__, request.path)
        return error_page(
            request, status=500, title="Something went wrong", message="Nothing was changed. Please try again later."
        )
    return error_page(request, status=exc.status, title="That did not work", message=str(exc))


def _needs_second_factor(request: HttpRequest) -> bool:
    user = request.user
    return not user.is_verified() and totp_confirmed_device(user=user) is not None  # type: ignore[union-attr,arg-type]


def _gatekeeper(request: HttpRequest, role: str) -> HttpResponse | None:
    if not request.user.is_authenticated:
        if request.headers.get("HX-Request"):
            # A fragment request after the session timed out: send the whole page to sign-in, not a fragment.
            response = HttpResponse(status=401)
            response["HX-Redirect"] = reverse(settings.LOGIN_URL)
            return response
        return redirect_to_login(request.get_full_path())
    if _needs_second_factor(request):
        return redirect("portal:login")
    if request.user.role != role:  # type: ignore[union-attr]
        return error_page(
            request,
            status=403,
            title="Not your page",
            message="This part of HealthLedger is for another kind of account.",
        )
    return None


def patient_page(view: View) -> View:
    """A page of the signed-in patient about their own record: view(request, patient, ...)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = _gatekeeper(request, Role.PATIENT)
        if refused is not None:
            return refused
        user: User = request.user  # type: ignore[assignment]
        patient: Patient = patient_record_ensure(user=user)
        try:
            return view(request, patient, *args, **kwargs)
        except HealthLedgerError as exc:
            return domain_error_page(request, exc)

    return wrapped


def role_page(*roles: str) -> Callable[[View], View]:
    """A page for a signed-in user of one of `roles` (the first is the one a stranger is asked to be)."""

    def wrap(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            role = getattr(request.user, "role", roles[0])
            refused = _gatekeeper(request, role if role in roles else roles[0])
            if refused is not None:
                return refused
            try:
                return view(request, *args, **kwargs)
            except HealthLedgerError as exc:
                return domain_error_page(request, exc)

        return wrapped

    return wrap


# Pages of the signed-in clinician and data steward: view(request, ...).
clinician_page = role_page(Role.CLINICIAN)
steward_page = role_page(Role.STEWARD)


BROWSER_TIME_ZONE_COOKIE = "hl_tz"  # set by portal.js from the browser's Intl time zone


def local_time_zone(request: HttpRequest) -> str:
    """The time zone to show this person's times in: her choice, else her browser's, else UTC."""
    user: User = request.user  # type: ignore[assignment]
    chosen = Preference.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first()
    if chosen:
        return chosen
    browser = unquote(request.COOKIES.get(BROWSER_TIME_ZONE_COOKIE, ""))[:64]
    return browser if browser and time_zone_valid(browser) else "UTC"


def in_local_time(view: View) -> View:
    """Render the page in the person's local time zone (every |date in its templates follows)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return view(request, *args, **kwargs)
        with timezone.override(zoneinfo.ZoneInfo(local_time_zone(request))):
            return view(request, *args, **kwargs)

    return wrapped


def own_caller(request: HttpRequest) -> Caller:
    """The patient reading their own record: purpose PATRQT, logged as them."""
    return Caller(actor=request.user)  # type: ignore[arg-type]
