"""`GET /fhir/Patient/{id}/$everything`: what the caller's grant covers of one record, as paged searchset Bundles.

Each type the grant (and the token's scopes) covers is searched through the gate, as any search is:
decided, and the page's resources logged in the read's own transaction. Types come in a fixed order
(Patient first, then by name) and, within a type, by id, so `_offset` pages through the whole record;
only the page's resources are decrypted (the other types are only counted). Parameters: `_type`
(comma-separated), `_since` (an instant: resources updated since), `_count`, `_offset`. A record the
caller may not see answers exactly as one that does not exist: 404.
"""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest, HttpResponse

from api import selectors
from api.access import fhir_endpoint, gate_caller
from api.auth import TokenContext
from api.fhir import params
from api.fhir.bundles import searchset
from api.fhir.records import MAX_QUERY_LOGGED, RECORD_TYPES
from api.outcomes import BadRequest
from consent import gate, pdp
from consent.purposes import Action
from healthledger.errors import ResourceNotFound
from records.models import Patient, Resource

_PARAMETERS = frozenset({"_type", "_since", "_count", "_offset", "_format", "_pretty"})


def _since(values: list[str]) -> datetime | None:
    if not values:
        return None
    try:
        since = datetime.fromisoformat(values[-1].replace("Z", "+00:00"))
    except ValueError:
        since = None
    if since is None or since.tzinfo is None or len(values) > 1:
        raise params.bad("_since", "give one FHIR instant with a time zone, e.g. 2024-01-01T00:00:00Z")
    return since


def _types(context: TokenContext, values: list[str]) -> list[str]:
    asked = {t.strip() for value in values for t in value.split(",") if t.strip()}
    unknown = sorted(asked - RECORD_TYPES)
    if unknown:
        raise params.bad("_type", f"not a resource type of a record: {', '.join(u[:64] for u in unknown)}")
    types = asked or RECORD_TYPES
    # Patient first (the record's subject), then by name: a fixed order for paging.
    return sorted((t for t in types if context.scopes.allows(t, "r")), key=lambda t: (t != "Patient", t))


def _permitted(caller: gate.Caller, patient: Patient, types: list[str]) -> list[str]:
    """The asked types this record holds that the caller's grant covers: decided here, read (and logged) later."""
    held = set(Resource.objects.filter(patient_id=patient.pk).values_list("resource_type", flat=True).distinct())
    return [
        t
        for t in types
        if t in held
        and pdp.decide(
            actor=caller.actor,
            patient_id=patient.pk,
            patient_user_id=patient.user_id,
            action=Action.READ,
            resource_types=[t],
            purpose=caller.purpose,
            reason=caller.reason,
            break_glass_code=caller.break_glass_code,
            interactive=caller.interactive,
            patient_context=caller.patient_context,
        ).permit
    ]


@fhir_endpoint("GET")
def patient_everything(request: HttpRequest, context: TokenContext, patient_id: str) -> HttpResponse:
    unknown = sorted(set(request.GET) - _PARAMETERS)
    if unknown:
        raise BadRequest(f"unsupported $everything parameter(s): {', '.join(u[:64] for u in unknown)}")
    paging = params.paging(request.GET)
    since = _since(request.GET.getlist("_since"))
    types = _types(context, request.GET.getlist("_type"))
    caller = gate_caller(request, context)
    patient = selectors.patient_by_fhir_id(fhir_id=patient_id)
    if patient is None:
        raise ResourceNotFound("resource not found")
    permitted = _permitted(caller, patient, types)
    if not permitted:
        # Nothing the caller may see: the gate decides once more, and logs the deny, for the record's subject.
        gate.resource_search_counted(
            caller=caller, patient=patient, resource_type="Patient", criteria=gate.SearchCriteria(), limit=0
        )
        raise ResourceNotFound("resource not found")
    criteria = gate.SearchCriteria(updated_ge=since)
    logged = f"Patient/{patient_id}/$everything?{request.META.get('QUERY_STRING', '')}"[:MAX_QUERY_LOGGED]

    def search(resource_type: str, limit: int, offset: int = 0) -> gate.SearchPage | None:
        try:
            return gate.resource_search_counted(
                caller=caller,
                patient=patient,
                resource_type=resource_type,
                criteria=criteria,
                sort="_id",
                limit=limit,
                offset=offset,
                query=logged,
                partial=True,
            )
        except ResourceNotFound:  # the grant ended between the decision above and this read
            return None

    counted = [(t, page.total or 0) for t in permitted if (page := search(t, 0)) is not None]
    entries: list[tuple[str, bytes]] = []
    failed: list[str] = []
    skip, need = paging.offset, paging.count
    for resource_type, total in counted:
        if need <= 0:
            break
        if skip >= total:
            skip -= total
            continue
        page = search(resource_type, need, skip)
        if page is not None:
            entries += [
                (ref.rsplit("/_history/", 1)[0], body) for ref, body in zip(page.references, page.bodies, strict=True)
            ]
            failed += [ref.rsplit("/_history/", 1)[0] for ref in page.failed]
            need -= len(page.references) + len(page.failed)
        skip = 0
    return searchset(request, paging, sum(total for _, total in counted), entries, failed=failed)
