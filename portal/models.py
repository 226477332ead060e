"""The portal's own rows: failed sign-ins, counted to slow down password guessing; sealed TOTP seeds."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django_otp.plugins.otp_totp.models import TOTPDevice

from healthledger.lib.account_secrets import totp_seed_open


class LoginFailure(models.Model):
    """One failed sign-in (a wrong password or a wrong second-factor code) for a username from an address.

    Kept in the database rather than a per-process cache so that every web worker sees the same count.
    """

    id = models.BigAutoField(primary_key=True)
    username = models.CharField(max_length=150)
    address = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["username", "address", "at"], name="portal_loginfailure_lookup")]

    def __str__(self) -> str:
        return f"failed sign-in at {self.at:%Y-%m-%d %H:%M}"


class SealedTOTPDevice(TOTPDevice):
    """django-otp's TOTP device whose `key` column holds the seed sealed (healthledger.lib.account_secrets).

    A proxy: same table, same verification and throttling code; only where the seed comes from
    changes. Create devices through portal.services (totp_device_begin), which seals the seed, and
    read them through this class: django-otp's own TOTPDevice cannot open a sealed seed.
    """

    class Meta:
        proxy = True
        verbose_name = "authenticator app"

    @property
    def bin_key(self) -> bytes:
        return totp_seed_open(sealed=self.key, user_id=self.user_id)


class Preference(models.Model):
    """How a person wants the portal to read: the time zone its times are shown in ("" follows the browser)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="portal_preference")
    time_zone = models.CharField(max_length=64, blank=True, default="")

    def __str__(self) -> str:
        return f"preferences of user {self.user_id}"


class RecoveryCode(models.Model):
    """One single-use code that stands in for the authenticator app's code, stored only as a keyed digest.

    Shown once when made (portal.recovery); a new set replaces the old one; using one marks it used.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes")
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "digest"], name="portal_recovery_code_unique")]

    def __str__(self) -> str:
        return f"recovery code {self.pk} of user {self.user_id}"
