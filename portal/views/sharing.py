"""Sharing (grant, list, revoke) and erasure: the patient's writes, each through one domain service."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from consent.services import InvalidGrant, grant_issue, grant_revoke
from portal import selectors
from portal.forms import EraseForm, GrantForm
from portal.services import record_erase
from portal.views.common import patient_page
from records.models import Patient


def _sharing_page(request: HttpRequest, patient: Patient, form: GrantForm, *, status: int = 200) -> HttpResponse:
    context = {
        "patient": patient,
        "nav": "sharing",
        "form": form,
        "grants": selectors.patient_grants(patient=patient, now=timezone.now()),
    }
    return render(request, "portal/sharing.html", context, status=status)


@require_http_methods(["GET", "POST"])
@patient_page
def sharing(request: HttpRequest, patient: Patient) -> HttpResponse:
    if request.method != "POST":
        return _sharing_page(request, patient, GrantForm())
    if patient.is_erased:
        return _sharing_page(request, patient, GrantForm(), status=410)
    form = GrantForm(request.POST)
    if not form.is_valid():
        return _sharing_page(request, patient, form, status=400)
    data = form.cleaned_data
    try:
        grant = grant_issue(
            patient=patient,
            by=request.user,  # type: ignore[arg-type]
            grantee=data["grantee"],
            resource_types=data["grant_types"],
            categories=data["grant_categories"],
            actions=data["actions"],
            purpose=data["purpose"],
            not_before=data["not_before"],
            not_after=data["not_after"],
        )
    except InvalidGrant as exc:
        form.add_error(None, str(exc))
        return _sharing_page(request, patient, form, status=400)
    return redirect(f"{request.path}?granted={grant.pk}#grant-{grant.pk}")


@require_http_methods(["GET", "POST"])
@patient_page
def grant_revoke_view(request: HttpRequest, patient: Patient, grant_id: str) -> HttpResponse:
    """GET asks for the confirmation; POST revokes (effective for the next request, then on chain)."""
    grant = selectors.patient_grant_get(patient=patient, grant_id=grant_id)
    if request.method == "POST":
        grant_revoke(grant=grant, by=request.user)  # type: ignore[arg-type]
        return redirect(f"/sharing/?revoked={grant.pk}#grant-{grant.pk}")
    row = selectors.grant_row(grant, timezone.now())
    return render(request, "portal/revoke_confirm.html", {"patient": patient, "nav": "sharing", "row": row})


@require_http_methods(["GET", "POST"])
@patient_page
def erase(request: HttpRequest, patient: Patient) -> HttpResponse:
    if patient.is_erased:
        return redirect("portal:erased")
    form = EraseForm(request.POST or None, user=request.user)  # type: ignore[arg-type]
    if request.method == "POST" and form.is_valid():
        erased = record_erase(patient=patient, by=request.user)  # type: ignore[arg-type]
        # The account is closed with the record: this answer is the last page it sees.
        logout(request)
        summary = selectors.erasure_summary(patient=erased)
        return render(request, "portal/erased.html", {"patient": erased, "summary": summary, **_backups()})
    status = 400 if form.errors else 200
    summary = selectors.erasure_summary(patient=patient)
    context = {"patient": patient, "nav": "erase", "form": form, "summary": summary, **_backups()}
    return render(request, "portal/erase.html", context, status=status)


@require_GET
@patient_page
def erased(request: HttpRequest, patient: Patient) -> HttpResponse:
    if not patient.is_erased:
        return redirect("portal:erase")
    summary = selectors.erasure_summary(patient=patient)
    context = {"patient": patient, "nav": "erase", "summary": summary, **_backups()}
    return render(request, "portal/erased.html", context)


def _backups() -> dict[str, int]:
    return {"key_backup_days": settings.HEALTHLEDGER_KEY_BACKUP_DAYS}
