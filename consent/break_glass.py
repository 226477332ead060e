"""Break-glass: a clinician's emergency read of a record nobody granted, bounded on every side.

- who: a clinician signed in as a person (an authorization-code token), never a backend service
  (client credentials) and never another role;
- why: a code from BreakGlassCode and a sentence of free text (MIN_REASON_CHARS, MIN_REASON_WORDS);
- what: reads of clinical types only (BREAK_GLASS_TYPES: no Claim, ExplanationOfBenefit, Coverage ...);
- how long: an episode, BREAK_GLASS_WINDOW_MINUTES from the first break-glass read of that clinician
  on that patient; a read after it opens a new episode (told and reviewed again);
- how often: episodes on at most BREAK_GLASS_PATIENTS_PER_DAY different patients in any 24 hours;
- then: the patient is told at once (a portal notification, and an e-mail with a sign-in link only),
  and a data steward reviews each episode.

`break_glass_refusal` is the rule on the request, pure: the decision point applies it, and the API
asks it first to say what is missing. `break_glass_admit` is the rule on the record, applied by the
gate to a permit: it opens or joins the episode, or refuses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import notification_create
from audit.models import Outcome
from audit.services import LogEvent, access_log_append
from consent.models import BreakGlassEpisode
from consent.purposes import BREAK_GLASS_TYPES, Action, BreakGlassCode
from healthledger.errors import ConsentDenied, HealthLedgerError
from records.logtext import log_text_seal
from records.models import Patient

logger = logging.getLogger(__name__)

MIN_REASON_CHARS = 20
MIN_REASON_WORDS = 4
NOTIFICATION_KIND = "consent.break-glass"


@dataclass(frozen=True)
class Refusal:
    """Why break-glass is refused: `basis` for the decision and the log, `message` for the caller (no data)."""

    basis: str
    message: str
    # What the caller must fix: "request" (a code or a reason missing or unusable) or "caller" (who asks).
    fault: str


def reason_problem(reason: str) -> str | None:
    """What keeps `reason` from being a sentence, or None: at least 20 characters and 4 different words."""
    text = reason.strip()
    if len(text) < MIN_REASON_CHARS:
        return f"at least {MIN_REASON_CHARS} characters"
    # A word has a letter in it; the same word repeated, or one character over and over, is not a sentence.
    words = {word.lower() for word in text.split() if any(char.isalpha() for char in word)}
    if len(words) < MIN_REASON_WORDS:
        return f"at least {MIN_REASON_WORDS} different words"
    return None


def break_glass_refusal(
    *,
    actor: User,
    interactive: bool,
    code: str,
    reason: str,
    action: str = Action.READ,
    resource_types: Sequence[str] = (),
) -> Refusal | None:
    """Whether this request may break the glass at all, before any record is looked at; None when it may."""
    if actor.role != Role.CLINICIAN:
        return Refusal("break-glass-not-clinician", "only a clinician may break the glass", "caller")
    if not interactive:
        message = (
            "break-glass needs a clinician signed in through the authorization-code flow;"
            " a backend service's (client-credentials) token cannot break the glass"
        )
        return Refusal("break-glass-not-signed-in", message, "caller")
    if action != Action.READ:
        return Refusal("break-glass-read-only", "break-glass only reads", "caller")
    if code not in BreakGlassCode.values:
        message = f"break-glass needs a reason code, one of {', '.join(BreakGlassCode.values)}"
        return Refusal("break-glass-needs-code", message, "request")
    problem = reason_problem(reason)
    if problem is not None:
        message = f"break-glass needs a written reason of at least a sentence ({problem})"
        return Refusal("break-glass-needs-reason", message, "request")
    if not set(resource_types) <= BREAK_GLASS_TYPES:
        return Refusal("break-glass-not-clinical", "break-glass opens clinical resource types only", "request")
    return None


@dataclass(frozen=True)
class Admission:
    """The episode a break-glass read belongs to, or why there is none (`refused`, a decision basis)."""

    episode: BreakGlassEpisode | None
    refused: str = ""


def break_glass_admit(
    *, clinician: User, patient: Patient, code: str, reason: str, at: datetime | None = None
) -> Admission:
    """Join the clinician's open episode on this patient, or open one (and tell the patient), or refuse.

    Refused: an erased record (the same not-found as any other), or a new patient past the
    clinician's daily limit. Opening commits the episode and the patient's notification together;
    the e-mail is queued when they commit.
    """
    now = at or timezone.now()
    if Patient.objects.filter(pk=patient.pk, erased_at__isnull=False).exists():
        return Admission(episode=None, refused="break-glass-erased")
    with transaction.atomic():
        # Serialises one clinician's admissions: two parallel first reads would otherwise both open an
        # episode (two notices to the patient) or both slip under the daily limit.
        list(User.objects.select_for_update().filter(pk=clinician.pk).values_list("pk", flat=True))
        mine = BreakGlassEpisode.objects.filter(clinician=clinician)
        current = mine.filter(patient_id=patient.pk, opened_at__lte=now, expires_at__gt=now).first()
        if current is not None:
            return Admission(episode=current)
        recent = set(mine.filter(opened_at__gt=now - timedelta(days=1)).values_list("patient_id", flat=True))
        if patient.pk not in recent and len(recent) >= settings.BREAK_GLASS_PATIENTS_PER_DAY:
            logger.warning("break-glass refused: daily limit clinician=%s", clinician.pk)
            return Admission(episode=None, refused="break-glass-daily-limit")
        episode = BreakGlassEpisode.objects.create(
            clinician=clinician,
            patient_id=patient.pk,
            code=code,
            # Sealed like the log's copy: erasure leaves the steward a record that a reason was given, not its words.
            reason=log_text_seal(patient_id=patient.pk, text=reason),
            opened_at=now,
            expires_at=now + timedelta(minutes=settings.BREAK_GLASS_WINDOW_MINUTES),
        )
        _patient_notify(episode=episode, clinician=clinician, patient=patient)
    logger.info("break-glass episode opened id=%s", episode.pk)
    return Admission(episode=episode)


def _patient_notify(*, episode: BreakGlassEpisode, clinician: User, patient: Patient) -> None:
    owner_id = patient.user_id
    if owner_id is None:  # a record without an account (imported by the operator) has nobody to tell
        return
    name = clinician.get_full_name() or clinician.username
    if name != clinician.username:
        name = f"{name} ({clinician.username})"
    when = episode.opened_at.strftime("%Y-%m-%d %H:%M")
    text = (
        f"{name} opened your record in an emergency (break-glass) at {when} UTC, without your permission."
        " Each read, and the reason given, is in your access log. A data steward reviews every emergency access."
    )
    notification_create(user_id=owner_id, kind=NOTIFICATION_KIND, text=text, link=reverse("portal:access_log"))


def break_glass_review(*, episode: BreakGlassEpisode, by: User, note: str) -> BreakGlassEpisode:
    """A data steward's review of one episode, with a note; logged in the patient's access log."""
    if by.role != Role.STEWARD:
        raise ConsentDenied("only a data steward reviews break-glass episodes")
    note = note.strip()
    if not note:
        raise HealthLedgerError("a review needs a note")
    with transaction.atomic():
        # Two stewards reviewing the same episode at once: the second sees the first's review and stops.
        locked = BreakGlassEpisode.objects.select_for_update().get(pk=episode.pk)
        if locked.reviewed_at is not None:
            raise HealthLedgerError("this episode was reviewed already", status=409)
        locked.reviewed_at = timezone.now()
        locked.reviewed_by = by
        locked.review_note = log_text_seal(patient_id=locked.patient_id, text=note)
        locked.save(update_fields=["reviewed_at", "reviewed_by", "review_note"])
        access_log_append(
            event=LogEvent(
                actor=f"user:{by.pk}",
                action="consent.break-glass.review",
                outcome=Outcome.PERMIT,
                patient_ref=locked.patient_id,
            )
        )
    return locked


def break_glass_episodes(*, reviewed: bool | None = None) -> list[BreakGlassEpisode]:
    """Episodes for the steward: unreviewed first, then newest first; `reviewed` narrows to one kind."""
    episodes = BreakGlassEpisode.objects.select_related("clinician", "reviewed_by")
    if reviewed is not None:
        episodes = episodes.filter(reviewed_at__isnull=not reviewed)
    unreviewed_first = F("reviewed_at").asc(nulls_first=True)
    from consent.gate import access_log_text  # the gate admits through this module: imported here, not at the top

    found = list(episodes.order_by(unreviewed_first, "-opened_at")[:200])
    for episode in found:
        # The steward reads the reason in words (in memory only; the row keeps it sealed).
        episode.reason = access_log_text(patient_id=episode.patient_id, text=episode.reason)
        episode.review_note = access_log_text(patient_id=episode.patient_id, text=episode.review_note)
    return found
