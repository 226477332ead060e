"""The researcher JSON API: studies, runs, releases. OAuth2 bearer tokens with the research scopes.

`research.read` reads the caller's studies, runs and released tables; `research.write` requests
studies, changes their state, runs approved analyses and asks for releases. Nothing here returns a
patient's identity, a record or a per-patient value: specs, states, rounded sizes, commitments,
disclosure reports and tables that passed disclosure control. A study the caller is not on is 404.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Role
from api.auth import BearerTokenAuthentication, TokenContext
from healthledger.errors import ResourceNotFound
from research import selectors, services
from research.feasibility import feasibility_count
from research.models import AnalysisRun, Release, ReleaseStatus


def _scoped(request: Request, scope: str) -> None:
    context: TokenContext = request.auth  # type: ignore[assignment]
    if scope not in context.scopes:
        raise PermissionDenied(f"this token lacks the {scope} scope")
    if request.user.role not in (Role.RESEARCHER, Role.STEWARD):
        raise PermissionDenied("the research API is for researchers and stewards")


def _run(request: Request, run_id: Any) -> AnalysisRun:
    run = AnalysisRun.objects.filter(pk=run_id).select_related("study").first()
    if run is None:
        raise ResourceNotFound("run not found")
    services.study_for_member(study_id=run.study_id, user=request.user)  # type: ignore[arg-type]
    return run


class StudyCreate(serializers.Serializer):  # type: ignore[type-arg]
    spec = serializers.JSONField(help_text="The study spec (research.specs): title, summary, duo, analyses, ends ...")


class Transition(serializers.Serializer):  # type: ignore[type-arg]
    to = serializers.CharField(max_length=16)
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class RunCreate(serializers.Serializer):  # type: ignore[type-arg]
    analysis = serializers.IntegerField(min_value=0, help_text="Index of the analysis in the approved spec")


class Feasibility(serializers.Serializer):  # type: ignore[type-arg]
    eligibility = serializers.JSONField(help_text="conditions, age [min, max], sex: as in a study spec")


class _Base(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]


class StudiesView(_Base):
    @extend_schema(
        operation_id="research_studies_list", summary="The caller's studies", tags=["research"], responses={200: dict}
    )
    def get(self, request: Request) -> Response:
        _scoped(request, "research.read")
        return Response([selectors.study_public(s) for s in selectors.studies_for(user=request.user)])  # type: ignore[arg-type]

    @extend_schema(
        operation_id="research_study_create",
        summary="Request a study (a draft)",
        tags=["research"],
        request=StudyCreate,
        responses={201: dict},
    )
    def post(self, request: Request) -> Response:
        _scoped(request, "research.write")
        asked = StudyCreate(data=request.data)
        asked.is_valid(raise_exception=True)
        study = services.study_create(by=request.user, spec=asked.validated_data["spec"])  # type: ignore[arg-type]
        return Response(selectors.study_public(study), status=201)


class StudyView(_Base):
    @extend_schema(operation_id="research_study_read", summary="One study", tags=["research"], responses={200: dict})
    def get(self, request: Request, study_id: str) -> Response:
        _scoped(request, "research.read")
        study = services.study_for_member(study_id=study_id, user=request.user)  # type: ignore[arg-type]
        return Response(selectors.study_public(study))


class StudyTransitionView(_Base):
    @extend_schema(
        operation_id="research_study_transition",
        summary="Change a study's state",
        tags=["research"],
        request=Transition,
        responses={200: dict},
    )
    def post(self, request: Request, study_id: str) -> Response:
        _scoped(request, "research.write")
        asked = Transition(data=request.data)
        asked.is_valid(raise_exception=True)
        study = services.study_for_member(study_id=study_id, user=request.user)  # type: ignore[arg-type]
        study = services.study_transition(study=study, by=request.user, **asked.validated_data)  # type: ignore[arg-type]
        return Response(selectors.study_public(study))


class StudyRunsView(_Base):
    @extend_schema(
        operation_id="research_runs_list", summary="The study's runs", tags=["research"], responses={200: dict}
    )
    def get(self, request: Request, study_id: str) -> Response:
        _scoped(request, "research.read")
        study = services.study_for_member(study_id=study_id, user=request.user)  # type: ignore[arg-type]
        runs = AnalysisRun.objects.filter(study=study).order_by("-created_at")
        return Response([selectors.run_public(r) for r in runs])

    @extend_schema(
        operation_id="research_run_create",
        summary="Run one of the approved analyses",
        tags=["research"],
        request=RunCreate,
        responses={202: dict},
    )
    def post(self, request: Request, study_id: str) -> Response:
        _scoped(request, "research.write")
        asked = RunCreate(data=request.data)
        asked.is_valid(raise_exception=True)
        study = services.study_for_member(study_id=study_id, user=request.user)  # type: ignore[arg-type]
        run = services.analysis_run_request(
            study=study, by=request.user, analysis_index=asked.validated_data["analysis"]
        )  # type: ignore[arg-type]
        return Response(selectors.run_public(run), status=202)


class RunView(_Base):
    @extend_schema(
        operation_id="research_run_read",
        summary="One run: status, disclosure report, checked table",
        tags=["research"],
        responses={200: dict},
    )
    def get(self, request: Request, run_id: str) -> Response:
        _scoped(request, "research.read")
        return Response(selectors.run_public(_run(request, run_id)))


class RunReleaseView(_Base):
    @extend_schema(
        operation_id="research_release_request",
        summary="Ask for the output check of a run",
        tags=["research"],
        request=None,
        responses={202: dict},
    )
    def post(self, request: Request, run_id: str) -> Response:
        _scoped(request, "research.write")
        release = services.release_request(run=_run(request, run_id), by=request.user)  # type: ignore[arg-type]
        return Response({"id": str(release.pk), "status": release.status, "checks_needed": release.checks_needed}, 202)


class ReleaseView(_Base):
    @extend_schema(
        operation_id="research_release_read",
        summary="A released table with its provenance (?as=csv, ?as=measure-report for counts)",
        tags=["research"],
        responses={200: dict},
    )
    def get(self, request: Request, release_id: str) -> Response | HttpResponse:
        _scoped(request, "research.read")
        release = Release.objects.filter(pk=release_id, status=ReleaseStatus.RELEASED).select_related("run").first()
        if release is None:
            raise ResourceNotFound("release not found")
        services.study_for_member(study_id=release.run.study_id, user=request.user)  # type: ignore[arg-type]
        if request.query_params.get("as") == "csv":
            return HttpResponse(selectors.release_csv(release), content_type="text/csv; charset=utf-8")
        if request.query_params.get("as") == "measure-report":
            report = selectors.release_measure_report(release)
            if report is None:
                raise ResourceNotFound("only count tables are served as a MeasureReport")
            return Response(report)
        return Response(selectors.release_public(release))


class FeasibilityView(_Base):
    @extend_schema(
        operation_id="research_feasibility",
        summary="An obfuscated count of patients who let studies find them and fit the criteria (daily quota)",
        tags=["research"],
        request=Feasibility,
        responses={200: dict},
    )
    def post(self, request: Request) -> Response:
        _scoped(request, "research.read")
        asked = Feasibility(data=request.data)
        asked.is_valid(raise_exception=True)
        answer = feasibility_count(by=request.user, eligibility=asked.validated_data["eligibility"])  # type: ignore[arg-type]
        return Response(answer)


urlpatterns = [
    path("feasibility", FeasibilityView.as_view(), name="research-feasibility"),
    path("studies", StudiesView.as_view(), name="research-studies"),
    path("studies/<uuid:study_id>", StudyView.as_view(), name="research-study"),
    path("studies/<uuid:study_id>/transitions", StudyTransitionView.as_view(), name="research-study-transition"),
    path("studies/<uuid:study_id>/runs", StudyRunsView.as_view(), name="research-study-runs"),
    path("runs/<uuid:run_id>", RunView.as_view(), name="research-run"),
    path("runs/<uuid:run_id>/release", RunReleaseView.as_view(), name="research-run-release"),
    path("releases/<uuid:release_id>", ReleaseView.as_view(), name="research-release"),
]
