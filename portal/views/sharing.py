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
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import User
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
from portal.forms import EraseForm, ShareForm
from portal.services import record_erase
from portal.share_terms import share_sentence, what_words
from portal.views.common import error_page, in_local_time, patient_page
from portal.views.keys import key_context
from records.models import Patient

DRAFT_SESSION_KEY = "portal.grant_draft"
CHOICES_SESSION_KEY = "portal.share_choices"  # her answers in step 2, to fill it again if she goes back


SHARE_STEPS = ("Who", "What and for how long", "Check and sign")


@require_GET
@patient_page
@in_local_time
def sharing(request: HttpRequest, patient: Patient) -> HttpResponse:
    context = {
        "patient": patient,
        "nav": "sharing",
        "grants": selectors.patient_grants(patient=patient, now=timezone.now()),
        **key_context(patient),
    }
    return render(request, "portal/sharing.html", context)


def _erased_page(request: HttpRequest) -> HttpResponse:
    return error_page(request, status=410, title="This record was erased", message="There is nothing left to share.")


def _step_context(patient: Patient, step: int) -> dict[str, Any]:
    return {"patient": patient, "nav": "sharing", "steps": SHARE_STEPS, "step": step}


@require_GET
@patient_page
def share_choose(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Step 1: the directory of clinicians, searchable by name, organisation or specialty."""
    if patient.is_erased:
        return _erased_page(request)
    query = request.GET.get("q", "").strip()[:100]
    context = {
        **_step_context(patient, 1),
        "query": query,
        "clinicians": selectors.clinician_directory_search(query=query),
        "page_size": selectors.DIRECTORY_PAGE,
    }
    return render(request, "portal/share_choose.html", context)


def _what_page(
    request: HttpRequest, patient: Patient, form: ShareForm, clinician: selectors.DirectoryEntry, *, status: int = 200
) -> HttpResponse:
    context = {**_step_context(patient, 2), "form": form, "clinician": clinician}
    return render(request, "portal/share_what.html", context, status=status)


@require_http_methods(["GET", "POST"])
@patient_page
@in_local_time
def share_what(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Step 2: what, why and how long, for the clinician chosen in step 1; a valid answer goes to the review."""
    if patient.is_erased:
        return _erased_page(request)
    if request.method != "POST":
        clinician = selectors.clinician_directory_get(clinician_id=request.GET.get("clinician", ""))
        initial = request.session.get(CHOICES_SESSION_KEY) or {}
        form = ShareForm(initial={**initial, "grantee": clinician.user.pk})
        return _what_page(request, patient, form, clinician)
    form = ShareForm(request.POST)
    clinician = selectors.clinician_directory_get(clinician_id=request.POST.get("grantee", ""))
    if not form.is_valid():
        return _what_page(request, patient, form, clinician, status=400)
    try:
        draft = grant_draft(**_terms(patient, request, form.cleaned_data))
    except InvalidGrant as exc:
        form.add_error(None, str(exc))
        return _what_page(request, patient, form, clinician, status=400)
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
    request.session[CHOICES_SESSION_KEY] = {
        key: form.cleaned_data.get(key) for key in ("what", "purpose", "actions", "duration")
    }
    return redirect("portal:share_review")


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


def _saved_terms(request: HttpRequest, patient: Patient) -> dict[str, Any] | None:
    saved = request.session.get(DRAFT_SESSION_KEY)
    grantee = User.objects.filter(pk=saved["grantee"]).first() if saved else None
    if saved is None or grantee is None:
        return None
    return {
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


@require_http_methods(["GET", "POST"])
@patient_page
@in_local_time
def share_review(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Step 3: the grant in one plain sentence, then her signature (or, while the operator holds her key, her
    confirmation); only then is anything stored."""
    if patient.is_erased:
        return _erased_page(request)
    terms = _saved_terms(request, patient)
    if terms is None:
        return error_page(request, status=400, title="Nothing to sign", message="Start again from the sharing page.")
    if request.method != "POST":
        return _review_page(request, patient, grant_draft(**terms))
    signature = request.POST.get("signature") or None
    try:
        grant = grant_issue(**terms, signature=signature)
    except InvalidSignature as exc:
        return _review_page(request, patient, grant_draft(**terms), error=str(exc), status=400)
    except (InvalidGrant, SignatureRequired) as exc:
        request.session.pop(DRAFT_SESSION_KEY, None)
        return error_page(request, status=400, title="That did not work", message=str(exc))
    request.session.pop(DRAFT_SESSION_KEY, None)
    request.session.pop(CHOICES_SESSION_KEY, None)
    return redirect(f"{reverse('portal:sharing')}?granted={grant.pk}#grant-{grant.pk}")


def _review_page(
    request: HttpRequest, patient: Patient, draft: Grant, *, error: str = "", status: int = 200
) -> HttpResponse:
    scope = scope_document(
        resource_types=draft.resource_types, categories=draft.categories, actions=draft.actions, purpose=draft.purpose
    )
    clinician = selectors.directory_entry(draft.grantee)
    sentence = share_sentence(
        who=clinician.words,
        resource_types=draft.resource_types,
        categories=draft.categories,
        actions=draft.actions,
        purpose=draft.purpose,
        not_before=draft.not_before,
        not_after=draft.not_after,
        now=timezone.now(),
    )
    context = {
        **_step_context(patient, 3),
        "row": selectors.grant_row(draft, timezone.now()),
        "draft": draft,
        "clinician": clinician,
        "sentence": sentence,
        "what": what_words(draft.resource_types, draft.categories),
        "error": error,
        # One definition of what is signed: the server's typed data, as JSON, is what the browser signs;
        # the scope and its salt let the browser check the commitment it signs hides this very scope.
        "typed_data": signing.typed_data_json(grant_typed_data(draft)),
        "scope_check": {"scope": scope.decode("utf-8"), "commitment_salt": draft.commitment_salt},
        **key_context(patient),
    }
    return render(request, "portal/sharing_sign.html", context, status=status)


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
