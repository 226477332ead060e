"""Studies: create, edit the spec, add members, change state (one service), close at the end date.

Every state change goes through study_transition, which enforces the state machine and the
separation of duties (nobody reviews a study they are on), records a StudyDecision, writes an
access-log entry (`research.study.<verb>`) and tells the other side (an in-app notification and
an e-mail that names no data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import notification_create, user_create
from audit.models import Outcome
from audit.services import LogEvent, access_log_append
from consent.purposes import Purpose
from consent.services import MAX_GRANT_DURATION
from healthledger.errors import HealthLedgerError, ResourceNotFound
from research import specs
from research.models import (
    MemberRole,
    Participation,
    Study,
    StudyDecision,
    StudyMember,
    StudyState,
)

logger = logging.getLogger(__name__)
S = StudyState

# (from, to) -> who may do it: "pi" (the study's principal investigator), "steward" (a steward not on
# the study), "system" (the end-date closer). Every other pair is refused.
TRANSITIONS: dict[tuple[str, str], str] = {
    (S.DRAFT, S.SUBMITTED): "pi",
    (S.RETURNED, S.SUBMITTED): "pi",
    (S.DRAFT, S.WITHDRAWN): "pi",
    (S.SUBMITTED, S.WITHDRAWN): "pi",
    (S.IN_REVIEW, S.WITHDRAWN): "pi",
    (S.RETURNED, S.WITHDRAWN): "pi",
    (S.SUBMITTED, S.IN_REVIEW): "steward",
    (S.IN_REVIEW, S.RETURNED): "steward",
    (S.IN_REVIEW, S.APPROVED): "steward",
    (S.IN_REVIEW, S.REJECTED): "steward",
    (S.APPROVED, S.RECRUITING): "pi",
    (S.RECRUITING, S.ACTIVE): "pi",
    (S.RECRUITING, S.SUSPENDED): "steward",
    (S.ACTIVE, S.SUSPENDED): "steward",
    (S.SUSPENDED, S.ACTIVE): "steward",
    (S.RECRUITING, S.REVOKED): "steward",
    (S.ACTIVE, S.REVOKED): "steward",
    (S.SUSPENDED, S.REVOKED): "steward",
    (S.RECRUITING, S.CLOSED): "pi",
    (S.ACTIVE, S.CLOSED): "pi",
}
SYSTEM_CLOSABLE = (S.APPROVED, S.RECRUITING, S.ACTIVE, S.SUSPENDED)
REASON_REQUIRED = {S.RETURNED, S.REJECTED, S.SUSPENDED, S.REVOKED}
VERBS = {
    S.SUBMITTED: "submit",
    S.IN_REVIEW: "review",
    S.RETURNED: "return",
    S.APPROVED: "approve",
    S.REJECTED: "reject",
    S.RECRUITING: "recruit",
    S.ACTIVE: "activate",
    S.SUSPENDED: "suspend",
    S.REVOKED: "revoke",
    S.WITHDRAWN: "withdraw",
    S.CLOSED: "close",
}
# FHIR R4 ResearchStudy.status for each state.
FHIR_STATUS = {
    S.DRAFT: "in-review",
    S.SUBMITTED: "in-review",
    S.IN_REVIEW: "in-review",
    S.RETURNED: "in-review",
    S.APPROVED: "approved",
    S.REJECTED: "disapproved",
    S.RECRUITING: "active",
    S.ACTIVE: "closed-to-accrual",
    S.SUSPENDED: "temporarily-closed-to-accrual",
    S.REVOKED: "administratively-completed",
    S.WITHDRAWN: "withdrawn",
    S.CLOSED: "completed",
}
JOINABLE = (S.RECRUITING,)
RUNNABLE = (S.RECRUITING, S.ACTIVE)


@dataclass
class StudyRefused(HealthLedgerError):
    """A study action this user may not take, or not in the study's state (409)."""

    status: int = field(default=409, kw_only=True)


def _actor(user: User | None) -> str:
    return f"user:{user.pk}" if user is not None else "system:research"


def _log(action: str, *, by: User | None, study: Study, outcome: str = Outcome.PERMIT, query: str = "") -> None:
    access_log_append(
        event=LogEvent(
            actor=_actor(by), action=action, outcome=outcome, purpose=Purpose.HRESCH, query=query or f"study={study.pk}"
        )
    )


def is_member(study: Study, user: User) -> bool:
    return StudyMember.objects.filter(study=study, user=user).exists()


def is_pi(study: Study, user: User) -> bool:
    return StudyMember.objects.filter(study=study, user=user, role=MemberRole.PI).exists()


def _ends_at(spec: dict[str, Any]) -> datetime:
    day = datetime.fromisoformat(spec["ends"]).date()
    return timezone.make_aware(datetime.combine(day, time(23, 59, 59)))


def _check_end(spec: dict[str, Any]) -> None:
    # Patients' grants last until the study's end, and a grant lasts at most MAX_GRANT_DURATION.
    ends = _ends_at(spec)
    if ends <= timezone.now():
        raise specs.InvalidSpec("the study's end date is in the past")
    if ends - timezone.now() > MAX_GRANT_DURATION:
        raise specs.InvalidSpec("a study ends at most five years from now (patients' grants last until then)")


def study_create(*, by: User, spec: object) -> Study:
    """A draft study from a spec; `by` becomes its principal investigator."""
    if by.role not in (Role.RESEARCHER, Role.STEWARD) or not by.is_active:
        raise StudyRefused("only a researcher can request a study")
    clean = specs.spec_validate(spec)
    _check_end(clean)
    with transaction.atomic():
        study = Study.objects.create(
            title=clean["title"], spec=clean, spec_hash=specs.spec_hash(clean), ends_at=_ends_at(clean), created_by=by
        )
        StudyMember.objects.create(study=study, user=by, role=MemberRole.PI)
        _log("research.study.create", by=by, study=study)
    return study


def study_spec_update(*, study: Study, by: User, spec: object) -> Study:
    """A new version of the spec. Editable in draft or returned; after approval it is a new version for review."""
    clean = specs.spec_validate(spec)
    _check_end(clean)
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)  # a review racing an edit must see one spec
        if not is_pi(locked, by):
            raise StudyRefused("only the principal investigator changes the spec")
        if locked.state not in (S.DRAFT, S.RETURNED, S.APPROVED, S.RECRUITING, S.ACTIVE):
            raise StudyRefused(f"a {locked.state} study's spec cannot change")
        if locked.state not in (S.DRAFT, S.RETURNED):
            # Changing what was approved needs approval again; joined patients must be asked again.
            locked.version += 1
            _transition_locked(locked, to=S.SUBMITTED, by=by, reason="spec changed after approval", check=False)
        locked.spec, locked.spec_hash, locked.title, locked.ends_at = (
            clean, specs.spec_hash(clean), clean["title"], _ends_at(clean),
        )  # fmt: skip
        locked.save()
        _log("research.study.spec", by=by, study=locked, query=f"study={locked.pk} spec={locked.spec_hash}")
        if locked.version > 1:
            _participants_ask_again(locked)
    return locked


def _participants_ask_again(study: Study) -> None:
    """Tell everyone who joined an earlier version: their join no longer counts until they join this one."""
    from research.preferences import wants_notice

    joined = Participation.objects.filter(study=study, withdrawn_at__isnull=True).exclude(spec_hash=study.spec_hash)
    for participation in joined.select_related("patient"):
        user_id = participation.patient.user_id
        if user_id is None:
            continue
        text = "A study you joined has changed. Your data is not used for it until you read and join it again."
        if wants_notice(participation.patient):
            text = (
                "A study you joined has changed and waits for approval; your data is not used for it meanwhile."
                " You chose to stay in when a study changes: once approved, you will have 14 days to object."
            )
        notification_create(
            user_id=user_id, kind="research.study.changed", text=text, link=f"/research/studies/{study.pk}/"
        )


def study_member_add(*, study: Study, by: User, user: User) -> StudyMember:
    """The PI adds a co-investigator (who may read the study's releases, and never review it)."""
    if not is_pi(study, by):
        raise StudyRefused("only the principal investigator adds members")
    if user.role not in (Role.RESEARCHER, Role.STEWARD):
        raise StudyRefused("co-investigators are researchers")
    with transaction.atomic():
        member = StudyMember.objects.create(study=study, user=user, role=MemberRole.CO_INVESTIGATOR)
        _log("research.study.member", by=by, study=study)
    return member


def _check_actor(study: Study, current: str, to: str, by: User | None) -> None:
    who = TRANSITIONS.get((current, to))
    if by is None:
        if to == S.CLOSED and current in SYSTEM_CLOSABLE:
            return
        raise StudyRefused(f"a study cannot go from {current} to {to} by itself")
    if who is None:
        raise StudyRefused(f"a study cannot go from {current} to {to}")
    if who == "pi" and not is_pi(study, by):
        raise StudyRefused("only the study's principal investigator can do this")
    if who == "steward":
        if by.role != Role.STEWARD:
            raise StudyRefused("only a data steward can do this")
        if is_member(study, by):
            raise StudyRefused("separation of duties: you cannot review a study you are on")


def _study_account(study: Study) -> User:
    # The study's own grantee: no password, never signs in; the chain sees only its pseudonymous address.
    return user_create(username=f"study-{study.pk.hex[:12]}", password=None, role=Role.RESEARCHER)


def _transition_locked(study: Study, *, to: str, by: User | None, reason: str, check: bool = True) -> None:
    current = study.state
    if check:
        _check_actor(study, current, to, by)
    if to in REASON_REQUIRED and not reason.strip():
        raise StudyRefused(f"a reason is required to {VERBS[to]} a study")
    if to == S.APPROVED and study.account_id is None:
        study.account = _study_account(study)
    study.state = to
    study.save()
    StudyDecision.objects.create(
        study=study, by=by, from_state=current, to_state=to, reason=reason.strip(), spec_hash=study.spec_hash
    )
    _log(f"research.study.{VERBS[to]}", by=by, study=study, query=f"study={study.pk} {current}->{to}")
    _notify(study, to=to, by=by)


def _notify(study: Study, *, to: str, by: User | None) -> None:
    text = f"Study request {study.title[:80]!r} is now {StudyState(to).label.lower()}."
    if (by is not None and by.role == Role.STEWARD) or by is None:
        targets = list(StudyMember.objects.filter(study=study).values_list("user_id", flat=True))
    else:
        targets = list(User.objects.filter(role=Role.STEWARD, is_active=True).values_list("pk", flat=True))
    for user_id in targets:
        if by is None or user_id != by.pk:
            notification_create(user_id=user_id, kind=f"research.study.{VERBS[to]}", text=text, link="/research/")
    if to == S.RECRUITING:
        _invite_patients(study)


def _invite_patients(study: Study) -> None:
    """Every patient whose standing preferences match the study's DUO codes is invited (eligibility is decided
    only after opt-in, so nobody learns who was not); a changed study opens its objection periods."""
    from research.preferences import change_notices_open, patients_invited

    text = f"A research study invites you to take part: {study.title[:80]!r}. Read what it would use before you decide."
    link = f"/research/studies/{study.pk}/"
    for patient in patients_invited(study):
        if patient.user_id is not None:
            notification_create(user_id=patient.user_id, kind="research.invitation", text=text, link=link)
    if study.version > 1:
        change_notices_open(study)


def study_transition(*, study: Study, to: str, by: User | None, reason: str = "") -> Study:
    """Move a study to `to`, if the state machine and the separation of duties allow it; logged and notified."""
    with transaction.atomic():
        # Locks the study row: two stewards deciding at once must not both act on the same state.
        locked = Study.objects.select_for_update().get(pk=study.pk)
        _transition_locked(locked, to=to, by=by, reason=reason)
    logger.info("study %s -> %s", locked.pk, to)
    return locked


def studies_close_ended(*, now: datetime | None = None) -> int:
    """Close every study past its end date (Celery beat). Returns how many closed."""
    now = now or timezone.now()
    closed = 0
    for study in Study.objects.filter(state__in=SYSTEM_CLOSABLE, ends_at__lte=now):
        study_transition(study=study, to=S.CLOSED, by=None, reason="end date reached")
        closed += 1
    return closed


def study_for_member(*, study_id: object, user: User) -> Study:
    """A study the user is on (or any, for a steward); ResourceNotFound otherwise."""
    study = Study.objects.filter(pk=study_id).first()
    if study is None or not (user.role == Role.STEWARD or is_member(study, user)):
        raise ResourceNotFound("study not found")
    return study
