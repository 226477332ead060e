"""The clinician's minimal page: who shared what with me until when, and the shared records themselves.

Reads go through consent.gate with the grant's own purpose, so a revoked or expired
grant shows as exactly that here and its records are out of reach on the next click.
"""

from __future__ import annotations

import uuid

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from consent import gate
from consent.purposes import ALL_RESOURCE_TYPES
from healthledger.errors import ResourceNotFound
from portal import selectors
from portal.plain import plain_resource, type_words
from portal.views.common import clinician_page
from records.fhir.jsonio import dumps_exact, loads_exact
from records.fhir.resource_types import RESOURCE_TYPES

BROWSABLE_TYPES = ("Observation", "Condition", "MedicationRequest", "AllergyIntolerance", "Immunization", "Procedure")


@require_GET
@clinician_page
def clinician_home(request: HttpRequest) -> HttpResponse:
    shared = selectors.shared_with(clinician=request.user, now=timezone.now())  # type: ignore[arg-type]
    return render(request, "portal/clinician.html", {"shared": shared, "nav": "clinician"})


def _purpose_for(shared: selectors.SharedPatient, resource_type: str) -> str:
    """The purpose to ask under: a live grant's for this type, else the latest grant's for it.

    The gate decides either way, so a revoked or expired grant is denied there, and the
    denied attempt is in the patient's access log like any other.
    """
    covering = [
        row
        for row in shared.grants
        if ALL_RESOURCE_TYPES in row.grant.resource_types or resource_type in row.grant.resource_types
    ]
    if not covering:
        raise ResourceNotFound("nothing shared")
    live = [row for row in covering if row.status == "recorded"]
    return (live or covering)[0].grant.purpose


@require_GET
@clinician_page
def clinician_patient(request: HttpRequest, patient_id: uuid.UUID) -> HttpResponse:
    now = timezone.now()
    shared = selectors.shared_patient_get(clinician=request.user, patient_id=patient_id, now=now)  # type: ignore[arg-type]
    resource_type = request.GET.get("type", "")
    listing = None
    if resource_type:
        if resource_type not in RESOURCE_TYPES:
            raise Http404
        caller = gate.Caller(actor=request.user, purpose=_purpose_for(shared, resource_type))  # type: ignore[arg-type]
        listing = selectors.clinician_listing(caller=caller, patient=shared.patient, resource_type=resource_type)
    types = sorted({t for row in shared.grants if row.status == "recorded" for t in row.grant.resource_types} - {"*"})
    if any(ALL_RESOURCE_TYPES in row.grant.resource_types for row in shared.grants if row.status == "recorded"):
        types = list(BROWSABLE_TYPES)
    context = {
        "shared": shared,
        "types": [(t, type_words(t)) for t in types],
        "resource_type": resource_type,
        "listing": listing,
        "nav": "clinician",
    }
    return render(request, "portal/clinician_patient.html", context)


@require_GET
@clinician_page
def clinician_resource(
    request: HttpRequest, patient_id: uuid.UUID, resource_type: str, resource_id: str
) -> HttpResponse:
    shared = selectors.shared_patient_get(clinician=request.user, patient_id=patient_id, now=timezone.now())  # type: ignore[arg-type]
    if resource_type not in RESOURCE_TYPES:
        raise Http404
    caller = gate.Caller(actor=request.user, purpose=_purpose_for(shared, resource_type))  # type: ignore[arg-type]
    body = gate.resource_read(
        caller=caller, patient=shared.patient, resource_type=resource_type, resource_id=resource_id
    )
    resource = loads_exact(body)
    context = {
        "shared": shared,
        "plain": plain_resource(resource),
        "fhir_json": dumps_exact(resource, indent=True).decode(),
        "resource_type": resource_type,
        "nav": "clinician",
    }
    return render(request, "portal/clinician_resource.html", context)
