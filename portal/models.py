"""The portal's own rows: failed sign-ins, counted to slow down password guessing."""

from __future__ import annotations

from django.db import models


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
