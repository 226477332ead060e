"""Sharing (grant, list, revoke) and erasure: the patient's writes, each through one domain service."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import User
from consent.keys import patient_key_custody
from consent.models import Grant
from consent.services import (
    InvalidGrant,
    InvalidSignature,
    SignatureRequired,
    erasure_revocations,
    grant_draft,
    grant_issue,
    grant_revoke,
    grant_typed_data,
    revoke_typed_data,
    scope_document,
)
from ledger import signing
from portal import selectors
from portal.forms import EraseForm, GrantForm
from portal.services import record_erase
from portal.views.common import error_page, patient_page
from portal.views.keys import key_context
from records.models import Patient

DRAFT_SESSION_KEY = "portal.grant_draft"


def _sharing_page(request: HttpRequest, patient: Patient, form: GrantForm, *, status: int = 200) -> HttpResponse:
    context = {
        "patient": patient,
        "nav": "sharing",
        "form": form,
        "grants": selectors.patient_grants(patient=patient, now=timezone.now()),
        **key_context(patient),
    }
    return render(request, "portal/sharing.html", context, status=status)


def _terms(patient: Patient, request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "patient": patient,
        "by": request.user,
        "grantee": data["grantee"],
        "resource_types": data["grant_types"],
        "categories": data["grant_categories"],
        "actions": data["actions"],
        "purpose": data["purpose"],
        "not_before": data["not_before"],
        "not_after": data["not_after"],
    }


@require_http_methods(["GET", "POST"])
@patient_page
def sharing(request: HttpRequest, patient: Patient) -> HttpResponse:
    if request.method != "POST":
        return _sharing_page(request, patient, GrantForm())
    if patient.is_erased:
        return _sharing_page(request, patient, GrantForm(), status=410)
    if "signature" in request.POST:
        return _sharing_signed(request, patient)
    form = GrantForm(request.POST)
    if not form.is_valid():
        return _sharing_page(request, patient, form, status=400)
    terms = _terms(patient, request, form.cleaned_data)
    try:
        if patient_key_custody(patient) == "server":
            # The operator still holds her key (the page says so): the server signs, as before she takes it.
            grant = grant_issue(**terms)
            return redirect(f"{request.path}?granted={grant.pk}#grant-{grant.pk}")
        draft = grant_draft(**terms)
    except (InvalidGrant, SignatureRequired) as exc:
        form.add_error(None, str(exc))
        return _sharing_page(request, patient, form, status=400)
    # The terms wait in her session, not in the page: what comes back is only her signature over them.
    request.session[DRAFT_SESSION_KEY] = {
        "grantee": draft.grantee_id,
        "resource_types": draft.resource_types,
        "categories": draft.categories,
        "actions": draft.actions,
        "purpose": draft.purpose,
        "not_before": draft.not_before.isoformat(),
        "not_after": draft.not_after.isoformat(),
        "salt": draft.salt,
        "commitment_salt": draft.commitment_salt,
    }
    return _sign_page(request, patient, draft)


def _sign_page(
    request: HttpRequest, patient: Patient, draft: Grant, *, error: str = "", status: int = 200
) -> HttpResponse:
    scope = scope_document(
        resource_types=draft.resource_types, categories=draft.categories, actions=draft.actions, purpose=draft.purpose
    )
    context = {
        "patient": patient,
        "nav": "sharing",
        "row": selectors.grant_row(draft, timezone.now()),
        "draft": draft,
        "error": error,
        # One definition of what is signed: the server's typed data, as JSON, is what the browser signs;
        # the scope and its salt let the browser check the commitment it signs hides this very scope.
        "typed_data": signing.typed_data_json(grant_typed_data(draft)),
        "scope_check": {"scope": scope.decode("utf-8"), "commitment_salt": draft.commitment_salt},
        **key_context(patient),
    }
    return render(request, "portal/sharing_sign.html", context, status=status)


def _sharing_signed(request: HttpRequest, patient: Patient) -> HttpResponse:
    saved = request.session.get(DRAFT_SESSION_KEY)
    if not saved:
        return error_page(request, status=400, title="Nothing to sign", message="Start again from the sharing page.")
    grantee = User.objects.filter(pk=saved["grantee"]).first()
    if grantee is None:
        return error_page(request, status=400, title="Nothing to sign", message="Start again from the sharing page.")
    terms = {
        "patient": patient,
        "by": request.user,
        "grantee": grantee,
        "resource_types": saved["resource_types"],
        "categories": saved["categories"],
        "actions": saved["actions"],
        "purpose": saved["purpose"],
        "not_before": datetime.fromisoformat(saved["not_before"]),
        "not_after": datetime.fromisoformat(saved["not_after"]),
        "salt": saved["salt"],
        "commitment_salt": saved["commitment_salt"],
    }
    try:
        grant = grant_issue(**terms, signature=request.POST.get("signature", ""))
    except InvalidSignature as exc:
        return _sign_page(request, patient, grant_draft(**terms), error=str(exc), status=400)
    except (InvalidGrant, SignatureRequired) as exc:
        request.session.pop(DRAFT_SESSION_KEY, None)
        return error_page(request, status=400, title="That did not work", message=str(exc))
    request.session.pop(DRAFT_SESSION_KEY, None)
    return redirect(f"{request.path}?granted={grant.pk}#grant-{grant.pk}")


@require_http_methods(["GET", "POST"])
@patient_page
def grant_revoke_view(request: HttpRequest, patient: Patient, grant_id: str) -> HttpResponse:
    """GET asks for the confirmation (and, with her own key, her signature); POST revokes (effective for the
    next request, then on chain)."""
    grant = selectors.patient_grant_get(patient=patient, grant_id=grant_id)
    error, status = "", 200
    if request.method == "POST":
        signature = request.POST.get("signature") or None
        try:
            grant_revoke(grant=grant, by=request.user, signature=signature)  # type: ignore[arg-type]
        except (InvalidSignature, SignatureRequired) as exc:
            error, status = str(exc), 400
        else:
            return redirect(f"/sharing/?revoked={grant.pk}#grant-{grant.pk}")
    row = selectors.grant_row(grant, timezone.now())
    context = {
        "patient": patient,
        "nav": "sharing",
        "row": row,
        "error": error,
        "typed_data": signing.typed_data_json(revoke_typed_data(grant)),
        "signer_address": grant.patient_address,
        **key_context(patient),
    }
    return render(request, "portal/revoke_confirm.html", context, status=status)


@require_http_methods(["GET", "POST"])
@patient_page
def erase(request: HttpRequest, patient: Patient) -> HttpResponse:
    if patient.is_erased:
        return redirect("portal:erased")
    form = EraseForm(request.POST or None, user=request.user)  # type: ignore[arg-type]
    if request.method == "POST" and form.is_valid():
        # Counted first: erasure deletes the rows the counts come from.
        before = selectors.erasure_summary(patient=patient)
        try:
            erased = record_erase(
                patient=patient,
                by=request.user,  # type: ignore[arg-type]
                revocation_signatures=_revocation_signatures(request),
            )
        except (InvalidSignature, SignatureRequired) as exc:
            form.add_error(None, f"Nothing was erased: {exc}")
            return _erase_page(request, patient, form)
        # The account is closed with the record: this answer is the last page it sees.
        logout(request)
        after = selectors.erasure_summary(patient=erased)
        summary = dataclasses.replace(before, erased_at=erased.erased_at, log_entries=after.log_entries)
        return render(request, "portal/erased.html", {"patient": erased, "summary": summary, **_backups()})
    return _erase_page(request, patient, form)


def _erase_page(request: HttpRequest, patient: Patient, form: EraseForm) -> HttpResponse:
    status = 400 if form.errors else 200
    summary = selectors.erasure_summary(patient=patient)
    context: dict[str, object] = {"patient": patient, "nav": "erase", "form": form, "summary": summary, **_backups()}
    context.update(key_context(patient))
    if context["key_custody"] != "server":
        # Her key, in her browser, signs every revocation erasure makes: after the shred nobody could.
        context["revocations"] = [
            {"grant_id": grant.pk, "signer": grant.patient_address, "typed_data": signing.typed_data_json(typed)}
            for grant, typed in erasure_revocations(patient=patient)
        ]
    return render(request, "portal/erase.html", context, status=status)


def _revocation_signatures(request: HttpRequest) -> dict[str, str] | None:
    text = request.POST.get("revocation_signatures", "")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()):
        return None
    return parsed


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
