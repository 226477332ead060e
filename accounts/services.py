"""Account services."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.shortcuts import resolve_url
from django.utils import timezone

from accounts.models import ClinicianProfile, Notification, NotificationPreference, Role, User


@dataclass(frozen=True)
class NotificationKind:
    label: str  # what the settings page calls it
    mandatory: bool = False  # always e-mailed: the patient cannot turn it off


# Every kind a user can be notified of, in one place: the settings page, the e-mail rule and the scans read it.
NOTIFICATION_KINDS: dict[str, NotificationKind] = {
    "consent.break-glass": NotificationKind("A clinician opened my record in an emergency", mandatory=True),
    "consent.key.reset": NotificationKind("The operator approved replacing my signing key", mandatory=True),
    "access.denied": NotificationKind("Someone tried to open my record and was refused"),
    "access.first-read": NotificationKind("A clinician reads my record for the first time"),
    "consent.grant.expiring": NotificationKind("Access I gave ends within a week"),
    "research.invitation": NotificationKind("A research study invites me"),
    "research.result": NotificationKind("A study I joined released a result"),
    "research.study.changed": NotificationKind("A study I joined changed"),
}


def user_create(
    *, username: str, password: str | None, role: str = Role.PATIENT, email: str = "", **extra: object
) -> User:
    """Create a user with a role; a None password makes an account that cannot log in with one."""
    user = User(username=username, email=email, role=role, **extra)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user


def clinician_profile_set(
    *, user: User, title: str = "", organisation: str = "", specialty: str = ""
) -> ClinicianProfile:
    """What patients see of a clinician in the sharing directory; only a clinician has one."""
    if user.role != Role.CLINICIAN:
        raise ValueError("only a clinician is listed in the directory")
    profile, _ = ClinicianProfile.objects.update_or_create(
        user=user, defaults={"title": title, "organisation": organisation, "specialty": specialty}
    )
    return profile


def notification_create(*, user_id: int, kind: str, text: str, link: str = "", dedupe_key: str = "") -> Notification:
    """Tell a user something at once: a row they see when they sign in, and an e-mail queued on commit.

    `text` must name no health data. The e-mail carries none either: only that there is
    something to see, and a sign-in link (notification_email_send). It is sent unless the user
    turned e-mail off for this kind (notification_email_wanted). With a `dedupe_key`, a notice
    made before under the same key is returned and nobody is told twice.
    """
    if dedupe_key:
        earlier = Notification.objects.filter(user_id=user_id, dedupe_key=dedupe_key).first()
        if earlier is not None:
            return earlier
    try:
        with transaction.atomic():
            notice = Notification.objects.create(
                user_id=user_id, kind=kind, text=text, link=link, dedupe_key=dedupe_key
            )
    except IntegrityError:
        # Two scans at once: the other one made it first.
        return Notification.objects.get(user_id=user_id, dedupe_key=dedupe_key)
    if notification_email_wanted(user_id=user_id, kind=kind):
        notice_id = notice.pk
        transaction.on_commit(lambda: _email_queue(notice_id))
    return notice


def notification_email_wanted(*, user_id: int, kind: str) -> bool:
    """Whether this kind goes by e-mail to this user: mandatory kinds always, others unless turned off."""
    info = NOTIFICATION_KINDS.get(kind)
    if info is not None and info.mandatory:
        return True
    return not NotificationPreference.objects.filter(user_id=user_id, kind=kind, email=False).exists()


def notification_preferences_set(*, user: User, email_off: set[str]) -> list[NotificationPreference]:
    """Store, for every optional kind, whether it is e-mailed (kinds in `email_off` are not)."""
    saved = []
    for kind, info in NOTIFICATION_KINDS.items():
        if info.mandatory:
            continue
        preference, _ = NotificationPreference.objects.update_or_create(
            user=user, kind=kind, defaults={"email": kind not in email_off}
        )
        saved.append(preference)
    return saved


def _email_queue(notification_id: int) -> None:
    from accounts.tasks import notification_email

    notification_email.delay(notification_id)


# The e-mail's subject by notification kind: words that say what happened, never to whom or why.
EMAIL_SUBJECTS = {
    "consent.break-glass": "Emergency access to your HealthLedger record",
    "consent.key.reset": "Your HealthLedger signing key is being replaced",
}
DEFAULT_EMAIL_SUBJECT = "Something new in your HealthLedger account"


def notification_email_send(*, notification_id: int) -> str:
    """Send a notification's e-mail once: "sent", or why not ("gone", "sent-before", "no-address").

    The body says only that there is something to see and where to sign in: the mailbox, its
    provider and every relay on the way are outside what this system protects.
    """
    with transaction.atomic():
        # A second delivery of the task running alongside waits here, then finds it sent.
        notice = Notification.objects.select_for_update().filter(pk=notification_id).first()
        if notice is None:
            return "gone"
        if notice.emailed_at is not None:
            return "sent-before"
        user = User.objects.only("email", "is_active").get(pk=notice.user_id)
        if not user.email or not user.is_active:
            return "no-address"
        sign_in = settings.HEALTHLEDGER_PUBLIC_URL.rstrip("/") + resolve_url(settings.LOGIN_URL)
        if notice.link:
            sign_in += "?" + urlencode({"next": notice.link}, safe="/")
        body = (
            "Hello,\n\nthere is something new about your HealthLedger account that you should see.\n"
            f"Sign in to read it:\n\n{sign_in}\n\n"
            "This e-mail holds no health information on purpose. If you did not expect it, sign in"
            " anyway, or contact the people who run your HealthLedger.\n"
        )
        subject = EMAIL_SUBJECTS.get(notice.kind, DEFAULT_EMAIL_SUBJECT)
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])
        notice.emailed_at = timezone.now()
        notice.save(update_fields=["emailed_at"])
    return "sent"


def notifications_mark_read(*, user: User) -> int:
    """Mark every unread notification of `user` read; returns how many."""
    return Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())


def account_scrub(*, user_id: int) -> User:
    """Close an account for good after its record was erased: signed out, unusable, and nameless.

    The row stays (the access log names actors by id), but nothing in it says who the
    person was: names, e-mail and the chosen username are replaced, the password is made
    unusable (which also ends every session, as Django ties sessions to the password hash).
    """
    user = User.objects.select_for_update().get(pk=user_id)
    user.is_active = False
    user.first_name = ""
    user.last_name = ""
    user.email = ""
    user.username = f"erased-{user.pk}"
    user.set_unusable_password()
    user.save(update_fields=["is_active", "first_name", "last_name", "email", "username", "password"])
    # Notifications name clinicians and times: about the person, so they go with the account.
    Notification.objects.filter(user_id=user_id).delete()
    return user
