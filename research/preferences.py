"""Patients' standing research preferences: who is invited, who may be counted before joining, and the
14-day objection period when a study she joined changes.

Preferences are GA4GH Data Use Ontology codes. The permission codes say which uses she allows
(GRU general research covers HMB health research, which covers DS disease-specific research); the
modifier codes (NCU, NPU, IRB, PUB, TS) are conditions she requires a study to commit to. A study
is matched by its broadest declared use (none declared counts as GRU) and must carry each modifier
she requires; NCU or NPU also excludes a commercial study. A patient who never set preferences
has the default: every use, no conditions (so she is invited as before), not findable, asked again
on a change. An empty list invites her to nothing.

Invitations go only to matching patients; eligibility is still decided after opt-in, inside the
worker, so an invitation says nothing about her record.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import notification_create
from audit.models import Outcome
from audit.services import LogEvent, access_log_append
from consent.purposes import Purpose
from healthledger.errors import HealthLedgerError
from records.models import Patient
from research.models import ChangeNotice, OnChange, Participation, ResearchPreference, Study
from research.specs import DUO_CODES

logger = logging.getLogger(__name__)

PERMISSIONS = ("GRU", "HMB", "DS")  # broadest first
MODIFIERS = ("NCU", "NPU", "IRB", "PUB", "TS")
COVERS = {"GRU": {"GRU", "HMB", "DS"}, "HMB": {"HMB", "DS"}, "DS": {"DS"}}
OBJECTION_PERIOD = timedelta(days=14)


class InvalidPreference(HealthLedgerError):
    """Preferences that cannot be saved as given (400)."""


def study_use(codes: list[str]) -> str:
    """The broadest use a study declares; a study declaring none is taken as general research use."""
    return next((code for code in PERMISSIONS if code in codes), "GRU")


def duo_matches(*, allowed: list[str], spec: dict[str, Any]) -> bool:
    """Whether a study (its spec's DUO codes and commercial flag) fits a patient's allowed DUO codes."""
    codes = list(spec.get("duo", []))
    covered = set().union(*(COVERS[code] for code in allowed if code in COVERS))
    if study_use(codes) not in covered:
        return False
    required = [code for code in allowed if code in MODIFIERS]
    if any(code not in codes for code in required):
        return False
    return not (spec.get("commercial") and {"NCU", "NPU"} & set(required))


def preference_of(patient: Patient) -> ResearchPreference:
    """Her saved preferences, or the unsaved defaults."""
    found = ResearchPreference.objects.filter(patient=patient).first()
    return found if found is not None else ResearchPreference(patient=patient)


def preference_set(*, patient: Patient, by: User, duo: list[str], findable: bool, on_change: str) -> ResearchPreference:
    """Save the patient's standing preferences (only she may); logged in the access log."""
    if patient.user_id != by.pk or by.role != Role.PATIENT:
        raise InvalidPreference("only the patient sets her research preferences")
    unknown = sorted(set(duo) - DUO_CODES.keys())
    if unknown:
        raise InvalidPreference(f"unknown Data Use Ontology codes: {', '.join(unknown)}")
    if on_change not in OnChange.values:
        raise InvalidPreference(f"on_change is one of {', '.join(OnChange.values)}")
    with transaction.atomic():
        preference, _ = ResearchPreference.objects.update_or_create(
            patient=patient,
            defaults={"duo": [c for c in DUO_CODES if c in duo], "findable": findable, "on_change": on_change},
        )
        access_log_append(
            event=LogEvent(
                actor=f"user:{by.pk}",
                action="research.preference.set",
                outcome=Outcome.PERMIT,
                patient_ref=patient.pk,
                purpose=Purpose.HRESCH,
                query=f"duo={','.join(preference.duo)} findable={findable} on_change={on_change}",
            )
        )
    return preference


def patients_invited(study: Study) -> list[Patient]:
    """Every patient (with an account, not erased) whose standing preferences match the study's DUO codes."""
    patients = Patient.objects.filter(
        user__role=Role.PATIENT, user__is_active=True, erased_at__isnull=True
    ).select_related("research_preference")
    out = []
    for patient in patients.iterator(chunk_size=500):
        preference = getattr(patient, "research_preference", None) or ResearchPreference(patient=patient)
        if duo_matches(allowed=preference.duo, spec=study.spec):
            out.append(patient)
    return out


def is_invited(patient: Patient, study: Study) -> bool:
    return duo_matches(allowed=preference_of(patient).duo, spec=study.spec)


def wants_notice(patient: Patient) -> bool:
    return preference_of(patient).on_change == OnChange.NOTIFY


def change_notices_open(study: Study, *, now: datetime | None = None) -> int:
    """A changed study is recruiting again: participants who chose so are told, with 14 days to object."""
    now = now or timezone.now()
    opened = 0
    earlier = Participation.objects.filter(study=study, withdrawn_at__isnull=True).exclude(spec_hash=study.spec_hash)
    for participation in earlier.select_related("patient"):
        if not wants_notice(participation.patient) or not is_invited(participation.patient, study):
            continue  # asked again (or, when the new version no longer fits her preferences, not at all)
        notice, made = ChangeNotice.objects.get_or_create(
            participation=participation, spec_hash=study.spec_hash, defaults={"due_at": now + OBJECTION_PERIOD}
        )
        if not made or participation.patient.user_id is None:
            continue
        opened += 1
        notification_create(
            user_id=participation.patient.user_id,
            kind="research.study.changed.notice",
            text=(
                f"A study you joined has changed: {study.title[:80]!r}. You chose to stay in when a study changes:"
                f" unless you object by {notice.due_at.date().isoformat()}, your participation continues under"
                " the new version. Read what changed."
            ),
            link=f"/research/studies/{study.pk}/",
        )
    return opened


def change_notice_object(*, notice: ChangeNotice, by: User) -> ChangeNotice:
    """She objects: her join does not carry over (her earlier join is not read either)."""
    with transaction.atomic():
        # Locks the notice: an objection racing the settling job must win or lose whole.
        locked = (
            ChangeNotice.objects.select_for_update(of=("self",))
            .select_related("participation__patient")
            .get(pk=notice.pk)
        )
        if locked.participation.patient.user_id != by.pk:
            raise InvalidPreference("only the participant objects")
        if locked.settled_at is None and locked.objected_at is None:
            locked.objected_at = timezone.now()
            locked.save(update_fields=["objected_at"])
            _log_notice(locked, "research.participation.object")
    return locked


def change_notices_settle(*, now: datetime | None = None) -> int:
    """Celery beat: carry over each participation whose objection period ended without an objection.

    A join of the new version is a new grant, and only she can sign it (the server signs nothing in her
    name): once the objection period ends unopposed she is asked to join again ("needs-her-signature"),
    and her earlier join, of the old version, is not read. Returns how many carried over: none, since
    carrying over would need her signature.
    """
    from research.services import RUNNABLE

    now = now or timezone.now()
    carried = 0
    due = ChangeNotice.objects.filter(due_at__lte=now, settled_at__isnull=True, objected_at__isnull=True)
    for notice_id in due.values_list("pk", flat=True):
        with transaction.atomic():
            notice = (
                ChangeNotice.objects.select_for_update(of=("self",))
                .select_related("participation__study", "participation__patient__user")
                .get(pk=notice_id)
            )
            if notice.settled_at is not None or notice.objected_at is not None:
                continue
            participation, study = notice.participation, notice.participation.study
            outcome = "carried"
            if participation.withdrawn_at is not None:
                outcome = "withdrawn"
            elif study.spec_hash != notice.spec_hash or study.state not in RUNNABLE or study.ends_at <= now:
                outcome = "study-changed-or-ended"
            else:
                outcome = "needs-her-signature"
            notice.settled_at, notice.outcome = now, outcome
            notice.save(update_fields=["settled_at", "outcome"])
            _log_notice(notice, f"research.participation.carry.{outcome}")
    return carried


def _log_notice(notice: ChangeNotice, action: str) -> None:
    participation = notice.participation
    access_log_append(
        event=LogEvent(
            actor=f"user:{participation.patient.user_id}" if action.endswith("object") else "system:research",
            action=action,
            outcome=Outcome.PERMIT,
            patient_ref=participation.patient_id,
            purpose=Purpose.HRESCH,
            query=f"study={participation.study_id} spec={notice.spec_hash}",
        )
    )


def open_notices(*, patient: Patient) -> list[ChangeNotice]:
    return list(
        ChangeNotice.objects.filter(
            participation__patient=patient, settled_at__isnull=True, objected_at__isnull=True
        ).select_related("participation__study")
    )
