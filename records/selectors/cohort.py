"""Several records at once: a research chunk's sealed versions, each record through its own blind-index tokens."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Exists, F, OuterRef

from records import blind_index
from records.models import IndexToken, Patient, ResourceVersion
from records.selectors.stored import _STORED_FIELDS, StoredVersion, _stored


def stored_patient_resources(*, patients: Sequence[Patient]) -> list[StoredVersion]:
    """The current version of each record's own Patient resource (the one `Patient.fhir_id` names), in one query."""
    wanted = {(p.pk, p.fhir_id) for p in patients if p.fhir_id}
    if not wanted:
        return []
    rows = ResourceVersion.objects.filter(
        resource__patient_id__in=[pid for pid, _ in wanted],
        resource__resource_type="Patient",
        resource__fhir_id__in=[fid for _, fid in wanted],
        version=F("resource__current_version"),
    )
    found = [_stored(row) for row in rows.order_by("resource_id").values_list(*_STORED_FIELDS)]
    return [item for item in found if (item.patient_id, item.fhir_id) in wanted]


def stored_matching_of_patients(
    *, patients: Sequence[Patient], resource_type: str, codes: Sequence[str] = ()
) -> list[StoredVersion]:
    """The current versions of several records' resources of one type carrying any of `codes` (none: every one of
    the type), in one query, by record then storage order: a research chunk's search, asked once for the chunk.

    The blind-index tokens are each record's own, so a token can only match its own record's resources.
    """
    if not patients:
        return []
    rows = ResourceVersion.objects.filter(
        resource__patient_id__in=[p.pk for p in patients],
        resource__resource_type=resource_type,
        version=F("resource__current_version"),
    )
    if codes:
        tokens = [blind_index.token(patient_id=p.pk, kind="code", value=c) for p in patients for c in codes]
        rows = rows.filter(Exists(IndexToken.objects.filter(resource_id=OuterRef("resource_id"), token__in=tokens)))
    ordered = rows.order_by("resource__patient_id", "resource_id")
    return [_stored(row) for row in ordered.values_list(*_STORED_FIELDS)]
