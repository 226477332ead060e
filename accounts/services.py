"""Account services."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.shortcuts import resolve_url
from django.utils import timezone

from accounts.models import Notification, Role, User


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


def notification_create(*, user_id: int, kind: str, text: str, link: str = "") -> Notification:
    """Tell a user something at once: a row they see when they sign in, and an e-mail queued on commit.

    `text` must name no health data. The e-mail carries none either: only that there is
    something to see, and a sign-in link (notification_email_send).
    """
    notice = Notification.objects.create(user_id=user_id, kind=kind, text=text, link=link)
    notice_id = notice.pk
    transaction.on_commit(lambda: _email_queue(notice_id))
    return notice


def _email_queue(notification_id: int) -> None:
    from accounts.tasks import notification_email

    notification_email.delay(notification_id)


# The e-mail's subject by notification kind: words that say what happened, never to whom or why.
EMAIL_SUBJECTS = {"consent.break-glass": "Emergency access to your HealthLedger record"}
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
