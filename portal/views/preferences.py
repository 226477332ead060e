"""The person's own settings for how the portal reads: the time zone of every time shown."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from portal.forms import TimeZoneForm
from portal.models import Preference
from portal.services import preference_time_zone_set
from portal.views.common import in_local_time, local_time_zone, patient_page
from records.models import Patient


@require_http_methods(["GET", "POST"])
@patient_page
@in_local_time
def preferences(request: HttpRequest, patient: Patient) -> HttpResponse:
    chosen = Preference.objects.filter(user_id=request.user.pk).values_list("time_zone", flat=True).first() or ""
    form = TimeZoneForm(request.POST or None, initial={"time_zone": chosen})
    if request.method == "POST" and form.is_valid():
        preference_time_zone_set(user=request.user, time_zone=form.cleaned_data["time_zone"])  # type: ignore[arg-type]
        messages.success(request, "Saved: times are now shown in your chosen time zone.")
        return redirect("portal:preferences")
    context = {"patient": patient, "nav": "preferences", "form": form, "showing": local_time_zone(request)}
    return render(request, "portal/preferences.html", context, status=400 if form.errors else 200)
