"""FHIR ResearchStudy and ResearchSubject: read and search, for the roles entitled to each.

`GET /fhir/ResearchStudy/{id}` and `GET /fhir/ResearchStudy`: a steward reads every study, a
researcher the studies they are on, a patient the studies she joined or is invited to.
`GET /fhir/ResearchSubject/{id}` and `GET /fhir/ResearchSubject`: the patient's own participations
only; a subject names its patient, so no researcher or steward ever reads one. Anyone else gets the
404 (or the empty searchset) a stranger gets for what does not exist. Searches take `_id` and,
for ResearchSubject, `study`. A read of an id that is none of these falls through to the records
(a ResearchStudy or ResearchSubject imported into a patient's record, read through the gate as any
record); searches list this server's studies and participations only.
"""

from __future__ import annotations

import uuid

import orjson
from django.http import HttpRequest, HttpResponse
from django.urls import path

from api.access import fhir_endpoint, scope_require
from api.auth import TokenContext
from api.fhir import params, records
from api.fhir.bundles import searchset
from api.outcomes import FHIR_CONTENT_TYPE
from research import fhir

STUDY_PARAMETERS = frozenset({"_id"})
SUBJECT_PARAMETERS = frozenset({"_id", "study"})


def _uuids(values: list[str]) -> list[uuid.UUID]:
    out = []
    for value in values:
        try:
            out.append(uuid.UUID(value.removeprefix("ResearchStudy/")))
        except ValueError:
            continue  # an id that is no UUID matches nothing, as any unknown id
    return out


def _resource(body: dict[str, object]) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), content_type=FHIR_CONTENT_TYPE)


@fhir_endpoint("GET")
def research_study_read(request: HttpRequest, context: TokenContext, resource_id: str) -> HttpResponse:
    scope_require(context, "ResearchStudy", "r")
    ids = _uuids([resource_id])
    study = fhir.studies_readable(user=context.user).filter(pk__in=ids).first()
    if study is None:
        # Not a study of this server: perhaps a ResearchStudy stored in a patient's record, read through the gate.
        return records.resource_read(request, resource_type="ResearchStudy", resource_id=resource_id)
    return _resource(fhir.study_as_research_study(study))


@fhir_endpoint("GET")
def research_study_search(request: HttpRequest, context: TokenContext) -> HttpResponse:
    scope_require(context, "ResearchStudy", "s")
    ignored = params.unknown_check(request.GET, STUDY_PARAMETERS, strict=params.strict(request))
    paging = params.paging(request.GET)
    studies = fhir.studies_readable(user=context.user).order_by("created_at")
    ids = [i for raw in request.GET.getlist("_id") for i in raw.split(",") if i]
    if ids:
        studies = studies.filter(pk__in=_uuids(ids))
    total = studies.count()
    page = list(studies[paging.offset : paging.offset + paging.count]) if paging.count else []
    entries = [(f"ResearchStudy/{s.pk}", orjson.dumps(fhir.study_as_research_study(s))) for s in page]
    return searchset(request, paging, total, entries, ignored)


@fhir_endpoint("GET")
def research_subject_read(request: HttpRequest, context: TokenContext, resource_id: str) -> HttpResponse:
    scope_require(context, "ResearchSubject", "r")
    ids = _uuids([resource_id])
    subject = fhir.subjects_readable(user=context.user).filter(pk__in=ids).select_related("study", "patient", "grant")
    found = subject.first()
    if found is None:
        return records.resource_read(request, resource_type="ResearchSubject", resource_id=resource_id)
    return _resource(fhir.participation_as_research_subject(found))


@fhir_endpoint("GET")
def research_subject_search(request: HttpRequest, context: TokenContext) -> HttpResponse:
    scope_require(context, "ResearchSubject", "s")
    ignored = params.unknown_check(request.GET, SUBJECT_PARAMETERS, strict=params.strict(request))
    paging = params.paging(request.GET)
    subjects = fhir.subjects_readable(user=context.user).select_related("study", "patient", "grant")
    ids = [i for raw in request.GET.getlist("_id") for i in raw.split(",") if i]
    if ids:
        subjects = subjects.filter(pk__in=_uuids(ids))
    studies = [i for raw in request.GET.getlist("study") for i in raw.split(",") if i]
    if studies:
        subjects = subjects.filter(study_id__in=_uuids(studies))
    subjects = subjects.order_by("joined_at")
    total = subjects.count()
    page = list(subjects[paging.offset : paging.offset + paging.count]) if paging.count else []
    entries = [(f"ResearchSubject/{p.pk}", orjson.dumps(fhir.participation_as_research_subject(p))) for p in page]
    return searchset(request, paging, total, entries, ignored)


urlpatterns = [
    path("ResearchStudy", research_study_search, name="fhir-researchstudy-search"),
    path("ResearchStudy/<str:resource_id>", research_study_read, name="fhir-researchstudy-read"),
    path("ResearchSubject", research_subject_search, name="fhir-researchsubject-search"),
    path("ResearchSubject/<str:resource_id>", research_subject_read, name="fhir-researchsubject-read"),
]

# The CapabilityStatement's entries for these types (api.fhir.capability lists them).
CAPABILITY = [
    {
        "type": "ResearchStudy",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [{"name": "_id", "type": "token"}],
        "documentation": "A steward reads every study, a researcher the studies they are on, a patient the"
        " studies she joined or is invited to.",
    },
    {
        "type": "ResearchSubject",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [{"name": "_id", "type": "token"}, {"name": "study", "type": "reference"}],
        "documentation": "The patient's own participations only; never a researcher or a steward.",
    },
]
