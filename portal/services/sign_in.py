"""The portal's own sign-in bookkeeping: failed attempts per username and address, the optional TOTP device."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from healthledger.lib.account_secrets import totp_seed_seal
from portal.models import LoginFailure, SealedTOTPDevice

logger = logging.getLogger(__name__)


TOTP_SEED_BYTES = 20  # RFC 4226's recommended 160 bits, django-otp's default


def _window_start() -> datetime:
    return timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def login_failures_recent(*, username: str, address: str | None) -> int:
    """Failed sign-ins for this username from this address within the window."""
    return LoginFailure.objects.filter(username=username.lower(), address=address, at__gte=_window_start()).count()


def login_is_throttled(*, username: str, address: str | None) -> bool:
    return login_failures_recent(username=username, address=address) >= settings.LOGIN_FAILURE_LIMIT


def login_failure_record(*, username: str, address: str | None) -> None:
    """Count one failed attempt (wrong password or wrong code); old rows are dropped on the way."""
    LoginFailure.objects.create(username=username.lower()[:150], address=address, at=timezone.now())
    LoginFailure.objects.filter(at__lt=_window_start()).delete()
    logger.info("portal sign-in failed")


def login_failures_clear(*, username: str, address: str | None) -> None:
    LoginFailure.objects.filter(username=username.lower(), address=address).delete()


# --- TOTP second factor ----------------------------------------------------------------------------


def totp_device_begin(*, user: User) -> SealedTOTPDevice:
    """An unconfirmed TOTP device to enrol (the same one until confirmed, so a reload keeps the QR code).

    Its seed is stored sealed under the account key: a copy of the database holds no usable second factor.
    """
    device = SealedTOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        seed = secrets.token_bytes(TOTP_SEED_BYTES)
        device = SealedTOTPDevice.objects.create(
            user=user, name="Authenticator app", confirmed=False, key=totp_seed_seal(seed=seed, user_id=user.pk)
        )
    return device


def totp_device_confirm(*, user: User, token: str) -> SealedTOTPDevice | None:
    """Confirm the enrolling device with a code from the app; None when the code is wrong."""
    device = SealedTOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None or not device.verify_token(token):
        return None
    with transaction.atomic():
        SealedTOTPDevice.objects.filter(user=user, confirmed=True).delete()  # one authenticator at a time
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return device


def totp_devices_remove(*, user: User) -> int:
    """Turn the second factor off: every TOTP device of the user goes."""
    removed, _ = SealedTOTPDevice.objects.filter(user=user).delete()
    return removed


def totp_confirmed_device(*, user: User) -> SealedTOTPDevice | None:
    return SealedTOTPDevice.objects.filter(user=user, confirmed=True).first()
