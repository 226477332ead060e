"""What a patient is told without asking: a refused attempt on her record, a clinician's first read, an ending grant.

Read from the access log and the grants by a periodic task (consent.tasks), never from signals:
the log is the record of what happened, and a scan that runs twice tells nobody twice
(accounts.services.notification_create with a dedupe key). The texts name people, never
health data; the e-mail that may follow names nobody.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.urls import reverse

from accounts.models import Role, ScanPosition, User
from accounts.services import notification_create
from audit.models import AccessLogEntry, Outcome
from consent.models import Grant, GrantStatus
from records.models import Patient

SCAN_NAME = "consent.alerts.access-log"
SCAN_BATCH = 5000
READ_ACTIONS = ("records.read", "records.search", "records.export", "records.export.download")
EXPIRY_WARNING = timedelta(days=7)


def _people(actors: set[str]) -> dict[str, User]:
    ids = {int(a[5:]) for a in actors if a.startswith("user:") and a[5:].isdigit()}
    return {f"user:{u.pk}": u for u in User.objects.filter(pk__in=ids)}


def _name(user: User) -> str:
    return user.get_full_name() or user.get_username()


def _owners(patient_refs: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    return dict(Patient.objects.filter(pk__in=patient_refs).values_list("pk", "user_id"))


def _first_read(entry: AccessLogEntry) -> bool:
    """Whether no earlier permitted read of this patient's record by this actor is in the log."""
    return not AccessLogEntry.objects.filter(
        patient_ref=entry.patient_ref,
        actor=entry.actor,
        outcome=Outcome.PERMIT,
        action__in=READ_ACTIONS,
        id__lt=entry.id,
    ).exists()


def access_alerts_scan(*, batch: int = SCAN_BATCH) -> int:
    """Tell patients about the access-log entries written since the last scan; returns how many entries were read.

    A refused attempt by another person: once per person and day. A clinician's first permitted
    read of the record: once. Break-glass reads are told at once by consent.break_glass, not here.
    """
    with transaction.atomic():
        # Locked so two beats running at once do not read the same entries twice.
        position, _ = ScanPosition.objects.select_for_update().get_or_create(name=SCAN_NAME)
        entries = list(
            AccessLogEntry.objects.filter(id__gt=position.position, patient_ref__isnull=False)
            .filter(actor__startswith="user:")
            .order_by("id")[:batch]
        )
        if not entries:
            return 0
        owners = _owners({e.patient_ref for e in entries if e.patient_ref})
        people = _people({e.actor for e in entries})
        for entry in entries:
            _alert(entry, owners, people)
        position.position = entries[-1].id
        position.save(update_fields=["position"])
    return len(entries)


def _alert(entry: AccessLogEntry, owners: dict[uuid.UUID, int], people: dict[str, User]) -> None:
    owner = owners.get(entry.patient_ref) if entry.patient_ref else None
    person = people.get(entry.actor)
    if owner is None or person is None or person.pk == owner or entry.break_glass:
        return
    link = reverse("portal:access_log")
    if entry.outcome == Outcome.DENY:
        notification_create(
            user_id=owner,
            kind="access.denied",
            text=f"{_name(person)} tried to open your record and was refused: you have not shared it with them.",
            link=link,
            dedupe_key=f"denied:{entry.actor}:{entry.at.date().isoformat()}",
        )
    elif entry.action in READ_ACTIONS and person.role == Role.CLINICIAN and _first_read(entry):
        notification_create(
            user_id=owner,
            kind="access.first-read",
            text=f"{_name(person)} read your record for the first time, under the access you gave.",
            link=link,
            dedupe_key=f"first-read:{entry.actor}",
        )


def grant_expiry_alerts(*, now: datetime) -> int:
    """Tell each patient, once per grant, that access she gave ends within a week; returns how many were told."""
    ending = (
        Grant.objects.filter(status=GrantStatus.RECORDED, not_after__gt=now, not_after__lte=now + EXPIRY_WARNING)
        .select_related("patient", "grantee")
        .order_by("not_after")
    )
    told = 0
    for grant in ending:
        if grant.patient.user_id is None:
            continue  # a record without an account (an operator's import): nobody to tell
        notification_create(
            user_id=grant.patient.user_id,
            kind="consent.grant.expiring",
            text=f"The access you gave {_name(grant.grantee)} ends on {grant.not_after:%d %B %Y}. "
            "Share again if they still need it.",
            link=reverse("portal:sharing"),
            dedupe_key=f"expiring:{grant.pk}",
        )
        told += 1
    return told
