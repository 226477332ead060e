"""Research pages: the patient's invitations, study cards, join and withdraw, and "My research";
the researcher's studies, runs and releases; the steward's study reviews and output checks.

Every page calls research services and selectors; none shows a patient's identity or record to a
researcher or a steward, only specs, states, rounded sizes, aggregate tables and check reports.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Role, User
from healthledger.errors import HealthLedgerError, ResourceNotFound
from portal.views.common import _gatekeeper, domain_error_page, patient_page
from records.models import Patient
from research import selectors, services
from research.models import AnalysisRun, Participation, Release, Study
from research.specs import InvalidSpec


def _role_page(*roles: str) -> Callable[..., Callable[..., HttpResponse]]:
    def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
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


@require_GET
@patient_page
def patient_research(request: HttpRequest, patient: Patient) -> HttpResponse:
    context = {
        "invitations": selectors.invitations(patient=patient),
        "mine": selectors.my_research(patient=patient),
        "nav": "research",
    }
    return render(request, "portal/research/patient.html", context)


@require_GET
@patient_page
def study_card(request: HttpRequest, patient: Patient, study_id: uuid.UUID) -> HttpResponse:
    study = _study(study_id)
    joined = services.participation_for(user=request.user, study=study)  # type: ignore[arg-type]
    if study.state not in services.JOINABLE and joined is None:
        raise ResourceNotFound("no such study")
    context = {"study": study, "card": selectors.card(study), "joined": joined, "nav": "research"}
    return render(request, "portal/research/card.html", context)


@require_POST
@patient_page
def study_join(request: HttpRequest, patient: Patient, study_id: uuid.UUID) -> HttpResponse:
    services.participation_join(study=_study(study_id), by=request.user)  # type: ignore[arg-type]
    return redirect("portal:patient_research")


@require_POST
@patient_page
def study_withdraw(request: HttpRequest, patient: Patient, study_id: uuid.UUID) -> HttpResponse:
    joined = Participation.objects.filter(study_id=study_id, patient=patient, withdrawn_at__isnull=True).first()
    if joined is None:
        raise ResourceNotFound("you do not take part in this study")
    services.participation_withdraw(participation=joined, by=request.user)  # type: ignore[arg-type]
    return redirect("portal:patient_research")


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
@_role_page(Role.RESEARCHER)
def research_studies(request: HttpRequest) -> HttpResponse:
    return _studies_page(request)


@require_POST
@_role_page(Role.RESEARCHER)
def research_study_create(request: HttpRequest) -> HttpResponse:
    text = request.POST.get("spec", "")
    try:
        services.study_create(by=request.user, spec=json.loads(text or "null"))  # type: ignore[arg-type]
    except (ValueError, InvalidSpec) as exc:
        message = str(exc) if isinstance(exc, InvalidSpec) else "the spec is not valid JSON"
        return _studies_page(request, spec_text=text, error=message)
    return redirect("portal:research_studies")


@require_POST
@_role_page(Role.RESEARCHER, Role.STEWARD)
def research_study_transition(request: HttpRequest, study_id: uuid.UUID) -> HttpResponse:
    study = services.study_for_member(study_id=study_id, user=request.user)  # type: ignore[arg-type]
    to = request.POST.get("to", "")
    services.study_transition(study=study, to=to, by=request.user, reason=request.POST.get("reason", ""))  # type: ignore[arg-type]
    return redirect("portal:research_home")


@require_POST
@_role_page(Role.RESEARCHER)
def research_run(request: HttpRequest, study_id: uuid.UUID) -> HttpResponse:
    study = services.study_for_member(study_id=study_id, user=request.user)  # type: ignore[arg-type]
    try:
        index = int(request.POST.get("analysis", ""))
    except ValueError:
        index = -1
    services.analysis_run_request(study=study, by=request.user, analysis_index=index)  # type: ignore[arg-type]
    return redirect("portal:research_studies")


@require_POST
@_role_page(Role.RESEARCHER)
def research_release_request(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    run = AnalysisRun.objects.filter(pk=run_id).select_related("study").first()
    if run is None:
        raise ResourceNotFound("no such run")
    services.release_request(run=run, by=request.user)  # type: ignore[arg-type]
    return redirect("portal:research_studies")


@require_GET
@_role_page(Role.RESEARCHER, Role.STEWARD)
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
@_role_page(Role.STEWARD)
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
@_role_page(Role.STEWARD)
def steward_output_check(request: HttpRequest, release_id: uuid.UUID) -> HttpResponse:
    release = Release.objects.filter(pk=release_id).first()
    if release is None:
        raise ResourceNotFound("no such output")
    approve = request.POST.get("decision") == "approve"
    services.output_check(release=release, by=request.user, approve=approve, comment=request.POST.get("comment", ""))  # type: ignore[arg-type]
    return redirect("portal:steward_research")
