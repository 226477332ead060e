"""Closing one's account, with a page that says how it differs from erasing the record."""

from __future__ import annotations

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from portal.closure import AccountNotClosed, account_close
from portal.views.common import patient_page
from records.models import Patient


@require_http_methods(["GET", "POST"])
@patient_page
def close_account(request: HttpRequest, patient: Patient) -> HttpResponse:
    context: dict[str, object] = {"patient": patient, "nav": "security"}
    if request.method == "POST":
        if request.POST.get("confirm") != "yes":
            context["problem"] = "Tick the box to confirm that you want to close your account."
            return render(request, "portal/account/close.html", context, status=400)
        try:
            account_close(user=request.user, patient=patient, password=request.POST.get("password", ""))  # type: ignore[arg-type]
        except AccountNotClosed as exc:
            context["problem"] = str(exc)[:1].upper() + str(exc)[1:] + "."
            return render(request, "portal/account/close.html", context, status=400)
        logout(request)
        return redirect("portal:account_closed")
    return render(request, "portal/account/close.html", context)


@require_http_methods(["GET"])
def account_closed(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/account/closed.html")
