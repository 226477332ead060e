"""What a clinician sees: the patients who shared with them, and the records a grant lets them read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from accounts.models import User
from consent import gate
from consent.models import Grant, GrantStatus
from healthledger.errors import ResourceNotFound
from portal.plain import resource_title, resource_value, resource_when
from portal.selectors.grants import GrantRow, grant_row
from portal.selectors.people import person_name
from portal.selectors.record import TimelineItem, _bodies
from records.models import Patient

ERASED_RECORD = "Record erased"


@dataclass
class SharedPatient:
    patient: Patient
    name: str
    grants: list[GrantRow]


def shared_with(*, clinician: User, now: datetime) -> list[SharedPatient]:
    """The patients whose grants name this clinician, with those grants (live first)."""
    grants = (
        Grant.objects.filter(grantee=clinician)
        .exclude(status=GrantStatus.FAILED)
        .select_related("patient__user", "grantee", "grantee__clinician_profile")
        .order_by("-not_after")
    )
    by_patient: dict[uuid.UUID, SharedPatient] = {}
    for grant in grants:
        entry = by_patient.get(grant.patient_id)
        if entry is None:
            owner = grant.patient.user
            if grant.patient.is_erased:
                # Erasure leaves the grant rows (revoked) but nothing that says whose record it was.
                name = ERASED_RECORD
            else:
                name = person_name(owner) if owner is not None else "A patient"
            entry = by_patient[grant.patient_id] = SharedPatient(patient=grant.patient, name=name, grants=[])
        entry.grants.append(grant_row(grant, now))
    return sorted(by_patient.values(), key=lambda s: s.name.lower())


def shared_patient_get(*, clinician: User, patient_id: uuid.UUID, now: datetime) -> SharedPatient:
    """A patient who granted this clinician something; any other patient id is simply not found."""
    for shared in shared_with(clinician=clinician, now=now):
        if shared.patient.pk == patient_id:
            return shared
    raise ResourceNotFound("patient not found")


def clinician_listing(*, caller: gate.Caller, patient: Patient, resource_type: str) -> list[TimelineItem]:
    """The resources of one type a grant lets this clinician read (the gate narrows to its categories), newest first."""
    bodies = _bodies(caller, patient, resource_type, query=f"{resource_type} (clinician page)")
    items = [
        TimelineItem(
            when=resource_when(body) or "",
            title=resource_title(body),
            value=resource_value(body),
            resource_type=resource_type,
            resource_id=str(body.get("id", "")),
        )
        for body in bodies
    ]
    return sorted(items, key=lambda item: item.when, reverse=True)
