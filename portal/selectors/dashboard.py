"""The dashboard's sharing and access summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from accounts.models import User
from audit.models import Outcome
from audit.selectors import access_log_entries_for_patient
from portal.selectors.access import AccessRow, _actor_names, access_row, access_rows
from portal.selectors.grants import GrantRow, patient_grants
from records.models import Patient, Resource

EXPIRING_SOON = timedelta(days=7)


@dataclass
class Dashboard:
    shared: list[GrantRow]
    expiring: list[GrantRow]
    recent: list[AccessRow]
    break_glass: list[AccessRow]
    denied_count: int
    resource_count: int


def dashboard(*, patient: Patient, me: User, now: datetime) -> Dashboard:
    """What is shared with whom until when, what is about to end, who looked lately, and every break-glass."""
    rows = patient_grants(patient=patient, now=now)
    shared = [r for r in rows if r.status in ("recorded", "pending", "not yet valid")]
    expiring = [r for r in shared if r.status == "recorded" and r.grant.not_after - now <= EXPIRING_SOON]
    recent, _ = access_rows(patient=patient, me=me, include_own=False, limit=8, offset=0, verify=False)
    glass_entries = list(access_log_entries_for_patient(patient_ref=patient.pk).filter(break_glass=True)[:20])
    names = _actor_names({e.actor for e in glass_entries}, me=me)
    break_glass = []
    for entry in glass_entries:
        row = access_row(entry=entry, me=me)
        row.who = names[entry.actor]
        break_glass.append(row)
    denied = (
        access_log_entries_for_patient(patient_ref=patient.pk)
        .filter(outcome=Outcome.DENY, at__gte=now - timedelta(days=30))
        .count()
    )
    return Dashboard(
        shared=shared,
        expiring=expiring,
        recent=recent,
        break_glass=break_glass,
        denied_count=denied,
        resource_count=Resource.objects.filter(patient=patient).count(),
    )
