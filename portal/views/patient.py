"""The patient's pages: dashboard, record (import, timeline, charts, each resource), export, access log.

Every FHIR body shown comes from consent.gate with the patient's own Caller (PATRQT),
so each page the patient opens is in their access log like anyone else's reads.
Every lookup is scoped by the signed-in patient's own record: another patient's
resource, grant or log entry id answers the same 404 as an invented one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.selectors import notifications_for
from consent import gate
from portal import selectors
from portal.forms import ImportForm
from portal.metrics import METRICS, METRICS_BY_SLUG
from portal.params import page_param, version_param
from portal.plain import TIMELINE_BY_SLUG, TIMELINE_VIEWS, plain_resource, type_words
from portal.services import ImportRejected, record_import
from portal.views.common import in_local_time, own_caller, patient_page
from records.fhir.jsonio import dumps_exact, loads_exact
from records.fhir.resource_types import RESOURCE_TYPES
from records.models import Patient
from records.selectors import resource_versions
from research.selectors import invitations as research_invitations

ACCESS_PAGE = 50


@require_GET
@patient_page
@in_local_time
def dashboard(request: HttpRequest, patient: Patient) -> HttpResponse:
    board = selectors.dashboard(patient=patient, me=request.user, now=timezone.now())  # type: ignore[arg-type]
    notices = notifications_for(user=request.user, unread_only=True, limit=5)  # type: ignore[arg-type]
    health = None
    if board.resource_count and not patient.is_erased:
        health = selectors.health_summary(caller=own_caller(request), patient=patient)
    context = {"board": board, "patient": patient, "nav": "dashboard", "notices": notices, "health": health}
    context["invitations"] = research_invitations(patient=patient)
    return render(request, "portal/dashboard.html", context)


@require_GET
@patient_page
@in_local_time
def record(request: HttpRequest, patient: Patient) -> HttpResponse:
    context = {
        "patient": patient,
        "nav": "record",
        "form": ImportForm(),
        "counts": selectors.record_counts(patient=patient),
        "sources": selectors.record_sources(caller=own_caller(request), patient=patient)
        if not patient.is_erased
        else [],
        "metrics": METRICS,
        "views": TIMELINE_VIEWS,
    }
    return render(request, "portal/record.html", context)


@require_POST
@patient_page
def record_import_view(request: HttpRequest, patient: Patient) -> HttpResponse:
    """The upload: the whole file is validated, then stored, in this request (up to FHIR_MAX_DOCUMENT_BYTES)."""
    form = ImportForm(request.POST, request.FILES)
    # htmx swaps the fragment in place; a browser without JavaScript gets a whole page.
    template = "portal/_import_result.html" if request.headers.get("HX-Request") else "portal/import_page.html"
    if not form.is_valid():
        return render(request, template, {"problems": ["Choose a file to import."]}, status=400)
    upload = form.cleaned_data["file"]
    try:
        report = record_import(
            patient=patient,
            user=request.user,  # type: ignore[arg-type]
            payload=upload.read(),
            filename=upload.name,
            source_label=form.cleaned_data["source"],
            skip_bad=form.cleaned_data["skip_bad"],
        )
    except ImportRejected as exc:
        context = {"problems": exc.problems, "filename": upload.name, "partial": exc.partial}
        return render(request, template, context, status=exc.status)
    context = {"report": report, "filename": upload.name, "counts": selectors.record_counts(patient=patient)}
    return render(request, template, context)


@require_GET
@patient_page
@in_local_time
def timeline(request: HttpRequest, patient: Patient, view: str) -> HttpResponse:
    chosen = TIMELINE_BY_SLUG.get(view)
    if chosen is None:
        raise Http404
    items = selectors.timeline(caller=own_caller(request), patient=patient, view=chosen)
    sources = sorted({item.source for item in items})
    source = request.GET.get("source", "")[:64]
    if source:
        items = [item for item in items if item.source == source]
    years: dict[str, list[selectors.TimelineItem]] = {}
    for item in items:
        years.setdefault(item.when[:4] or "Undated", []).append(item)
    context = {
        "view": chosen,
        "years": years,
        "count": len(items),
        "patient": patient,
        "nav": "record",
        "sources": sources,
        "source": source,
    }
    template = "portal/_timeline.html" if request.headers.get("HX-Request") else "portal/timeline.html"
    return render(request, template, context)


@require_GET
@patient_page
def chart_data(request: HttpRequest, patient: Patient, metric: str) -> HttpResponse:
    """JSON for one chart, or for every chart of the record page ("all"), through the gate.

    "all" is one search: loading the record page writes one entry into the patient's own log, not one per chart.
    """
    if metric == "all":
        charts = selectors.metric_charts(caller=own_caller(request), patient=patient, metrics=METRICS)
        return JsonResponse({"charts": charts})
    chosen = METRICS_BY_SLUG.get(metric)
    if chosen is None:
        raise Http404
    data = selectors.metric_chart(caller=own_caller(request), patient=patient, metric=chosen)
    return JsonResponse(data)


@require_GET
@patient_page
@in_local_time
def resource_detail(request: HttpRequest, patient: Patient, resource_type: str, resource_id: str) -> HttpResponse:
    if resource_type not in RESOURCE_TYPES:
        raise Http404
    pinned = version_param(request)
    body = gate.resource_read(
        caller=own_caller(request),
        patient=patient,
        resource_type=resource_type,
        resource_id=resource_id,
        version=pinned,
    )
    resource = loads_exact(body)
    context = {
        "patient": patient,
        "nav": "record",
        "plain": plain_resource(resource),
        "resource_type": resource_type,
        "resource_id": resource_id,
        "fhir_json": dumps_exact(resource, indent=True).decode(),
        "versions": resource_versions(patient=patient, resource_type=resource_type, resource_id=resource_id),
        "version": pinned,
        "type_words": type_words(resource_type),
    }
    return render(request, "portal/resource.html", context)


@require_GET
@patient_page
def record_export(request: HttpRequest, patient: Patient) -> HttpResponse:
    """The whole record as one FHIR Bundle, as a download (logged as one access)."""
    body = gate.record_export(caller=own_caller(request), patient=patient)
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    response = HttpResponse(body, content_type="application/fhir+json")
    response["Content-Disposition"] = f'attachment; filename="healthledger-record-{stamp}.json"'
    return response


@require_GET
@patient_page
@in_local_time
def access_log(request: HttpRequest, patient: Patient) -> HttpResponse:
    include_own = request.GET.get("mine") == "1"
    number = page_param(request)
    rows, more = selectors.access_rows(
        patient=patient,
        me=request.user,  # type: ignore[arg-type]
        include_own=include_own,
        limit=ACCESS_PAGE,
        offset=(number - 1) * ACCESS_PAGE,
    )
    context = {
        "patient": patient,
        "nav": "access",
        "rows": rows,
        "more": more,
        "page": number,
        "include_own": include_own,
        "unavailable": any(r.proof_status == "unavailable" for r in rows),
    }
    return render(request, "portal/access_log.html", context)


@require_GET
@patient_page
@in_local_time
def access_proof(request: HttpRequest, patient: Patient, entry_id: int) -> HttpResponse:
    """One entry with its inclusion proof into the root anchored on chain, and what was checked."""
    entry = selectors.access_entry_get(patient=patient, entry_id=entry_id)
    proof = selectors.entry_proof(entry)
    context = {
        "patient": patient,
        "nav": "access",
        "row": selectors.access_row(entry=entry, me=request.user),  # type: ignore[arg-type]
        "proof": proof,
        "proof_json": orjson.dumps(proof.as_dict(), option=orjson.OPT_INDENT_2).decode(),
    }
    return render(request, "portal/access_proof.html", context)
