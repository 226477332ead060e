"""Research pages: the patient's invitations, study cards, join and withdraw, and "My research";
the researcher's studies, runs and releases; the steward's study reviews and output checks.

Every page calls research services and selectors; none shows a patient's identity or record to a
researcher or a steward, only specs, states, rounded sizes, aggregate tables and check reports.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Role, User
from consent.models import Grant
from consent.services import (
    InvalidSignature,
    SignatureRequired,
    grant_draft,
    grant_typed_data,
    revoke_typed_data,
    scope_document,
)
from healthledger.errors import ResourceNotFound
from ledger import signing
from portal.views.common import error_page, patient_page, role_page
from portal.views.keys import key_context
from records.models import Patient
from research import preferences, selectors, services
from research.models import AnalysisRun, ChangeNotice, Participation, Release, Study
from research.specs import DUO_CODES, InvalidSpec


def _study(study_id: uuid.UUID) -> Study:
    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        raise ResourceNotFound("no such study")
    return study


# --- Patients ------------------------------------------------------------------------------------


def research_home(request: HttpRequest) -> HttpResponse:
    """/research/: each role's own research page."""
    role = getattr(request.user, "role", None)
    if role == Role.RESEARCHER:
        return redirect("portal:research_studies")
    if role == Role.STEWARD:
        return redirect("portal:steward_research")
    return patient_research(request)


@require_http_methods(["GET", "POST"])
@patient_page
def patient_research(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Invitations, "My research", her standing preferences (POST saves them) and open change notices (POST objects)."""
    error = ""
    if request.method == "POST":
        try:
            _research_post(request, patient)
        except preferences.InvalidPreference as exc:
            error = str(exc)
        else:
            return redirect("portal:patient_research")
    preference = preferences.preference_of(patient)
    context = {
        "invitations": selectors.invitations(patient=patient),
        "mine": selectors.my_research(patient=patient),
        "preference": preference,
        "duo_choices": [(code, words, code in preference.duo) for code, words in DUO_CODES.items()],
        "notices": preferences.open_notices(patient=patient),
        "error": error,
        "nav": "research",
    }
    return render(request, "portal/research/patient.html", context, status=400 if error else 200)


def _research_post(request: HttpRequest, patient: Patient) -> None:
    user: User = request.user  # type: ignore[assignment]
    notice_id = request.POST.get("object")
    if notice_id:
        notice = ChangeNotice.objects.filter(pk=notice_id if notice_id.isdigit() else 0).first()
        if notice is None:
            raise preferences.InvalidPreference("no such notice")
        preferences.change_notice_object(notice=notice, by=user)
        return
    preferences.preference_set(
        patient=patient,
        by=user,
        duo=request.POST.getlist("duo"),
        findable=request.POST.get("findable") == "on",
        on_change=request.POST.get("on_change", "ask"),
    )


@require_GET
@patient_page
def study_card(request: HttpRequest, patient: Patient, study_id: uuid.UUID) -> HttpResponse:
    study = _study(study_id)
    joined = services.participation_for(user=request.user, study=study)  # type: ignore[arg-type]
    if joined is not None and joined.spec_hash != study.spec_hash:
        joined = None  # she joined an earlier version: she is asked again
    if study.state not in services.JOINABLE and joined is None:
        raise ResourceNotFound("no such study")
    context = {"study": study, "card": selectors.card(study), "joined": joined, "nav": "research"}
    return render(request, "portal/research/card.html", context)


JOIN_SESSION_KEY = "research_join_draft"


@require_POST
@patient_page
def study_join(request: HttpRequest, patient: Patient, study_id: uuid.UUID) -> HttpResponse:
    """Join: she signs the study's grant in her browser (a legacy record is asked to take its key first)."""
    study = _study(study_id)
    user: User = request.user  # type: ignore[assignment]
    if "signature" in request.POST:
        saved = request.session.get(JOIN_SESSION_KEY) or {}
        if saved.get("study") != str(study.pk):
            return error_page(request, status=400, title="Nothing to sign", message="Start again from the study.")
        try:
            services.participation_join(
                study=study,
                by=user,
                signature=request.POST.get("signature", ""),
                salt=saved["salt"],
                commitment_salt=saved["commitment_salt"],
                not_before=datetime.fromisoformat(saved["not_before"]),
            )
        except (InvalidSignature, SignatureRequired) as exc:
            return _join_sign_page(request, patient, study, error=str(exc))
        request.session.pop(JOIN_SESSION_KEY, None)
        return redirect("portal:patient_research")
    draft = services.participation_draft(study=study, by=user)
    # The terms wait in her session; what comes back is only her signature over them.
    request.session[JOIN_SESSION_KEY] = {
        "study": str(study.pk),
        "salt": draft.salt,
        "commitment_salt": draft.commitment_salt,
        "not_before": draft.not_before.isoformat(),
    }
    return _join_sign_page(request, patient, study, draft=draft)


def _join_sign_page(
    request: HttpRequest, patient: Patient, study: Study, *, draft: Grant | None = None, error: str = ""
) -> HttpResponse:
    if draft is None:
        saved = request.session.get(JOIN_SESSION_KEY) or {}
        draft = grant_draft(
            **{k: v for k, v in services._join_terms(study, request.user).items() if k != "not_before"},  # type: ignore[arg-type]
            not_before=datetime.fromisoformat(saved["not_before"]),
            salt=saved["salt"],
            commitment_salt=saved["commitment_salt"],
        )
    scope = scope_document(
        resource_types=draft.resource_types, categories=draft.categories, actions=draft.actions, purpose=draft.purpose
    )
    context = {
        "study": study,
        "draft": draft,
        "error": error,
        "nav": "research",
        "typed_data": signing.typed_data_json(grant_typed_data(draft)),
        "scope_check": {"scope": scope.decode("utf-8"), "commitment_salt": draft.commitment_salt},
        **key_context(patient),
    }
    return render(request, "portal/research/join_sign.html", context, status=400 if error else 200)


@require_http_methods(["GET", "POST"])
@patient_page
def study_withdraw(request: HttpRequest, patient: Patient, study_id: uuid.UUID) -> HttpResponse:
    """GET asks for confirmation (and, with her own key, her signature); POST withdraws."""
    joined = Participation.objects.filter(study_id=study_id, patient=patient, withdrawn_at__isnull=True).first()
    if joined is None:
        raise ResourceNotFound("you do not take part in this study")
    error = ""
    if request.method == "POST":
        try:
            services.participation_withdraw(
                participation=joined,
                by=request.user,  # type: ignore[arg-type]
                signature=request.POST.get("signature") or None,
            )
        except (InvalidSignature, SignatureRequired) as exc:
            error = str(exc)
        else:
            return redirect("portal:patient_research")
    grant = services.grant_of(joined)
    context = {
        "study": joined.study,
        "grant": grant,
        "error": error,
        "nav": "research",
        "typed_data": signing.typed_data_json(revoke_typed_data(grant)),
        "signer_address": grant.patient_address,
        **key_context(patient),
    }
    return render(request, "portal/research/withdraw.html", context, status=400 if error else 200)


# --- Researchers -----------------------------------------------------------------------------------


def _studies_page(request: HttpRequest, *, spec_text: str = "", error: str = "") -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    studies = [
        (study, [selectors.run_public(r) for r in AnalysisRun.objects.filter(study=study).order_by("-created_at")[:20]])
        for study in selectors.studies_for(user=user)
    ]
    context = {"studies": studies, "spec_text": spec_text, "error": error, "nav": "research"}
    return render(request, "portal/research/researcher.html", context, status=400 if error else 200)


@require_GET
@role_page(Role.RESEARCHER)
def research_studies(request: HttpRequest) -> HttpResponse:
    return _studies_page(request)


@require_POST
@role_page(Role.RESEARCHER)
def research_study_create(request: HttpRequest) -> HttpResponse:
    text = request.POST.get("spec", "")
    try:
        services.study_create(by=request.user, spec=json.loads(text or "null"))  # type: ignore[arg-type]
    except (ValueError, InvalidSpec) as exc:
        message = str(exc) if isinstance(exc, InvalidSpec) else "the spec is not valid JSON"
        return _studies_page(request, spec_text=text, error=message)
    return redirect("portal:research_studies")


@require_POST
@role_page(Role.RESEARCHER, Role.STEWARD)
def research_study_transition(request: HttpRequest, study_id: uuid.UUID) -> HttpResponse:
    study = services.study_for_member(study_id=study_id, user=request.user)  # type: ignore[arg-type]
    to = request.POST.get("to", "")
    services.study_transition(study=study, to=to, by=request.user, reason=request.POST.get("reason", ""))  # type: ignore[arg-type]
    return redirect("portal:research_home")


@require_POST
@role_page(Role.RESEARCHER)
def research_run(request: HttpRequest, study_id: uuid.UUID) -> HttpResponse:
    study = services.study_for_member(study_id=study_id, user=request.user)  # type: ignore[arg-type]
    try:
        index = int(request.POST.get("analysis", ""))
    except ValueError:
        index = -1
    services.analysis_run_request(study=study, by=request.user, analysis_index=index)  # type: ignore[arg-type]
    return redirect("portal:research_studies")


@require_POST
@role_page(Role.RESEARCHER)
def research_release_request(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    run = AnalysisRun.objects.filter(pk=run_id).select_related("study").first()
    if run is None:
        raise ResourceNotFound("no such run")
    services.release_request(run=run, by=request.user)  # type: ignore[arg-type]
    return redirect("portal:research_studies")


@require_GET
@role_page(Role.RESEARCHER, Role.STEWARD)
def research_release_download(request: HttpRequest, release_id: uuid.UUID, fmt: str) -> HttpResponse:
    release = Release.objects.filter(pk=release_id, status="released").select_related("run__study").first()
    if release is None:
        raise ResourceNotFound("no such release")
    services.study_for_member(study_id=release.run.study_id, user=request.user)  # type: ignore[arg-type]
    if fmt == "csv":
        response = HttpResponse(selectors.release_csv(release), content_type="text/csv; charset=utf-8")
    else:
        body = json.dumps(selectors.release_public(release), indent=2, default=str)
        response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="release-{release.pk}.{fmt}"'
    return response


# --- Stewards ------------------------------------------------------------------------------------


@require_GET
@role_page(Role.STEWARD)
def steward_research(request: HttpRequest) -> HttpResponse:
    steward: User = request.user  # type: ignore[assignment]
    outputs = [
        (release, selectors.run_public(release.run, for_checker=True))
        for release in selectors.output_queue(steward=steward)
    ]
    context = {
        "reviews": selectors.review_queue(steward=steward),
        "outputs": outputs,
        "studies": selectors.studies_for(user=steward),
        "nav": "research",
    }
    return render(request, "portal/research/steward.html", context)


@require_POST
@role_page(Role.STEWARD)
def steward_output_check(request: HttpRequest, release_id: uuid.UUID) -> HttpResponse:
    release = Release.objects.filter(pk=release_id).first()
    if release is None:
        raise ResourceNotFound("no such output")
    approve = request.POST.get("decision") == "approve"
    services.output_check(release=release, by=request.user, approve=approve, comment=request.POST.get("comment", ""))  # type: ignore[arg-type]
    return redirect("portal:steward_research")
