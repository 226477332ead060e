"""A patient's own account: signing up by email, confirming it, and the record that comes with it."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from accounts.models import Role, User
from accounts.services import user_create
from records.models import Patient
from records.selectors import patient_for_user
from records.services import patient_create


def patient_signup_request(
    *, username: str, password: str, email: str, site_url: str, first_name: str = "", last_name: str = ""
) -> User | None:
    """Ask for a patient account; what happens next is told by e-mail only, so sign-up tells no one who exists.

    A free username gets an inactive account with its record, and an e-mail with the link that
    activates it (patient_signup_confirm). A taken one gets nothing but an e-mail to the address
    given, saying the name is taken. The page answers the same either way, after the same
    password-hashing work. Returns the new (inactive) user, or None for a taken name.
    """
    try:
        with transaction.atomic():
            if User.objects.filter(username__iexact=username).exists():
                raise IntegrityError("username taken")
            user = user_create(
                username=username,
                password=password,
                role=Role.PATIENT,
                email=email,
                first_name=first_name,
                last_name=last_name,
                is_active=False,
            )
            # Self-custody from the start: her signing key is made in her browser, never here.
            patient_create(user=user)
            uid = urlsafe_base64_encode(str(user.pk).encode("ascii"))
            token = default_token_generator.make_token(user)
            link = site_url.rstrip("/") + reverse("portal:signup_confirm", args=[uid, token])
            body = SIGNUP_EMAIL.format(link=link, hours=settings.PASSWORD_RESET_TIMEOUT // 3600)
    except IntegrityError:
        make_password(password)  # the hashing a new account costs: the answer's timing tells nothing either
        body = SIGNUP_TAKEN_EMAIL.format(username=username, site=site_url.rstrip("/") + reverse("portal:signup"))
        user = None
    # After the account commits, so the link never points at an account that was rolled back.
    transaction.on_commit(lambda: send_mail(SIGNUP_SUBJECT, body, settings.DEFAULT_FROM_EMAIL, [email]))
    return user


SIGNUP_SUBJECT = "Your HealthLedger account"
SIGNUP_EMAIL = (
    "Hello,\n\nto finish creating your HealthLedger account, open this link within {hours} hours:\n\n{link}\n\n"
    "If you did not ask for an account, ignore this e-mail: nothing happens without the link.\n"
)
SIGNUP_TAKEN_EMAIL = (
    'Hello,\n\nsomeone, perhaps you, tried to create a HealthLedger account named "{username}" with this'
    " address. That name is already taken, so no account was made. Choose another name at:\n\n{site}\n\n"
    "If this was not you, ignore this e-mail.\n"
)


def patient_signup_confirm(*, uidb64: str, token: str) -> User | None:
    """Activate the account a sign-up link names; None when the link is wrong, expired or already used.

    Only an account that was never signed in to is activated here: a link cannot bring back an
    account that was deactivated later (by an administrator, or by erasure).
    """
    try:
        user_id = int(urlsafe_base64_decode(uidb64).decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    with transaction.atomic():
        # Locked: two clicks on the same link activate once.
        user = User.objects.select_for_update().filter(pk=user_id, is_active=False, last_login__isnull=True).first()
        if user is None or not default_token_generator.check_token(user, token):
            return None
        user.is_active = True
        user.save(update_fields=["is_active"])
    return user


def patient_record_ensure(*, user: User) -> Patient:
    """The patient's record, created empty for a patient account made elsewhere (the admin, a script)."""
    with transaction.atomic():
        return patient_for_user(user_id=user.pk) or patient_create(user=user)
