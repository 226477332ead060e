"""The patient's notifications: what she must be told at once (a break-glass read of her record ...)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.selectors import notifications_for
from accounts.services import notifications_mark_read
from portal.views.common import in_local_time, patient_page
from records.models import Patient


@require_GET
@patient_page
@in_local_time
def notifications(request: HttpRequest, patient: Patient) -> HttpResponse:
    notices = notifications_for(user=request.user)  # type: ignore[arg-type]
    context = {"patient": patient, "nav": "notifications", "notices": notices}
    return render(request, "portal/notifications.html", context)


@require_POST
@patient_page
def notifications_read(request: HttpRequest, patient: Patient) -> HttpResponse:
    notifications_mark_read(user=request.user)  # type: ignore[arg-type]
    return redirect("portal:notifications")
