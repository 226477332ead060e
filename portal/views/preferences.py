"""The person's own settings: the time zone of every time shown, and which notifications come by e-mail."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.models import NotificationPreference, User
from accounts.services import NOTIFICATION_KINDS, notification_preferences_set
from portal.forms import NotificationEmailForm, TimeZoneForm
from portal.models import Preference
from portal.services import preference_time_zone_set
from portal.views.common import in_local_time, local_time_zone, patient_page
from records.models import Patient


def _emailed_kinds(user_id: int) -> list[str]:
    off = set(NotificationPreference.objects.filter(user_id=user_id, email=False).values_list("kind", flat=True))
    return [kind for kind, info in NOTIFICATION_KINDS.items() if not info.mandatory and kind not in off]


@require_http_methods(["GET", "POST"])
@patient_page
@in_local_time
def preferences(request: HttpRequest, patient: Patient) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    chosen = Preference.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first() or ""
    posted = request.POST if request.method == "POST" else None
    which = request.POST.get("form") if posted else None
    zone_form = TimeZoneForm(posted if which == "time_zone" else None, initial={"time_zone": chosen})
    email_form = NotificationEmailForm(
        posted if which == "notifications" else None, initial={"email_kinds": _emailed_kinds(user.pk)}
    )
    if which == "time_zone" and zone_form.is_valid():
        preference_time_zone_set(user=request.user, time_zone=zone_form.cleaned_data["time_zone"])  # type: ignore[arg-type]
        messages.success(request, "Saved: times are now shown in your chosen time zone.")
        return redirect("portal:preferences")
    if which == "notifications" and email_form.is_valid():
        optional = {kind for kind, info in NOTIFICATION_KINDS.items() if not info.mandatory}
        off = optional - set(email_form.cleaned_data["email_kinds"])
        notification_preferences_set(user=request.user, email_off=off)  # type: ignore[arg-type]
        messages.success(request, "Saved: your e-mail choices.")
        return redirect("portal:preferences")
    context = {
        "patient": patient,
        "nav": "preferences",
        "form": zone_form,
        "email_form": email_form,
        "showing": local_time_zone(request),
    }
    status = 400 if zone_form.errors or email_form.errors else 200
    return render(request, "portal/preferences.html", context, status=status)
