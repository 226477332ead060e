"""SMART launch context: which patients a clinician may open an app for, and a patient's own record.

Shared by the standalone launch's picker (api.smart) and the EHR launch (api.ehr_launch).
"""

from __future__ import annotations

import uuid

from django.utils import timezone

from accounts.models import Role, User
from consent.pdp import live_grant_patients
from consent.purposes import Purpose
from records.models import Patient

# The purposes a clinician's picker looks at: every grant a clinician holds, short of break-glass.
_PICKER_PURPOSES = tuple(p.value for p in Purpose if p != Purpose.ETREAT)


def needs_patient(scopes: list[str] | str) -> bool:
    """Whether these scopes need a patient in context: `launch/patient`, or any `patient/` scope."""
    names = scopes.split() if isinstance(scopes, str) else scopes
    return any(s == "launch/patient" or s.startswith("patient/") for s in names)


def launch_patients(*, user: User) -> list[tuple[Patient, str]]:
    """The patients a clinician may pick: those on whom a live grant names them now, with a display name."""
    now = timezone.now()
    ids: set[uuid.UUID] = set()
    for purpose in _PICKER_PURPOSES:
        ids.update(live_grant_patients(grantee_id=user.pk, purpose=purpose, at=now))
    patients = Patient.objects.filter(pk__in=ids, erased_at__isnull=True).exclude(fhir_id="").select_related("user")
    named = [(p, display_name(p)) for p in patients]
    return sorted(named, key=lambda item: (item[1].lower(), item[0].fhir_id))


def display_name(patient: Patient) -> str:
    owner = patient.user
    name = owner.get_full_name().strip() if owner is not None else ""
    return name or f"Patient {patient.fhir_id}"


def launch_patient_choose(*, user: User, fhir_id: str) -> Patient | None:
    """The patient a clinician picked, when a live grant names them on it; None otherwise."""
    for patient, _ in launch_patients(user=user):
        if patient.fhir_id == fhir_id:
            return patient
    return None


def own_record(user: User) -> Patient | None:
    if user.role != Role.PATIENT:
        return None
    return Patient.objects.filter(user=user, erased_at__isnull=True).exclude(fhir_id="").first()
