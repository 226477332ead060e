"""Plain row lookups: a resource, its version numbers, the record of a user."""

from __future__ import annotations

from healthledger.errors import ResourceNotFound
from records.models import Patient, Resource, ResourceVersion


def resource_get(*, patient: Patient, resource_type: str, resource_id: str) -> Resource:
    try:
        return Resource.objects.get(patient=patient, resource_type=resource_type, fhir_id=resource_id)
    except Resource.DoesNotExist as exc:
        raise ResourceNotFound("resource not found") from exc


def resource_versions(*, patient: Patient, resource_type: str, resource_id: str) -> list[int]:
    """Version numbers of one resource, oldest first (empty when it is not the patient's)."""
    return list(
        ResourceVersion.objects.filter(
            resource__patient=patient, resource__resource_type=resource_type, resource__fhir_id=resource_id
        )
        .order_by("version")
        .values_list("version", flat=True)
    )


def patient_for_user(*, user_id: int) -> Patient | None:
    return Patient.objects.filter(user_id=user_id).first()
