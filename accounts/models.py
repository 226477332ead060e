"""Users and their roles. A user has exactly one role for the life of the account."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.TextChoices):
    PATIENT = "patient", "Patient"
    CLINICIAN = "clinician", "Clinician"
    RESEARCHER = "researcher", "Researcher"
    STEWARD = "steward", "Data steward"


class User(AbstractUser):
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.PATIENT)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=[r.value for r in Role]),
                name="accounts_user_role_valid",
            )
        ]

    @property
    def is_patient(self) -> bool:
        return self.role == Role.PATIENT

    @property
    def is_clinician(self) -> bool:
        return self.role == Role.CLINICIAN


class Notification(models.Model):
    """Something a user must be told at once (a break-glass read of their record ...), shown where they sign in.

    The text names no health data: it may also be sent by e-mail, which says only that there is
    something to see and where to sign in.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    # A dotted code, like the access log's actions: "consent.break-glass".
    kind = models.CharField(max_length=64)
    text = models.TextField()
    # A path on this site where the user sees more, after signing in.
    link = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    # Set by the e-mail task once sent, so a second delivery of its message sends nothing.
    emailed_at = models.DateTimeField(null=True, blank=True)
    # What makes a notice the same notice ("first-read:user:7"): a scan that runs again tells nobody twice.
    dedupe_key = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"], name="accounts_notification_user")]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "dedupe_key"], condition=~models.Q(dedupe_key=""), name="accounts_notification_once"
            )
        ]

    def __str__(self) -> str:
        return f"notification {self.pk} {self.kind}"


class NotificationPreference(models.Model):
    """Whether a user wants e-mail for one kind of notification (no row: the kind's default, which is yes).

    The portal row is always written: what happened to a record is never hidden from its owner.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notification_preferences")
    kind = models.CharField(max_length=64)
    email = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "kind"], name="accounts_notification_pref_unique")]

    def __str__(self) -> str:
        return f"{self.kind} e-mail {'on' if self.email else 'off'} for user {self.user_id}"


class ScanPosition(models.Model):
    """How far a periodic scan has read an append-only log (the access log's id), so each run reads only what is new."""

    name = models.CharField(max_length=64, primary_key=True)
    position = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} at {self.position}"


class ClinicianProfile(models.Model):
    """What a patient sees of a clinician in the sharing directory: a title, the organisation, the specialty.

    Public by design (a patient chooses whom to share with from these), so it holds nothing about patients.
    """

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="clinician_profile")
    title = models.CharField(max_length=32, blank=True, default="", help_text='How they are addressed: "Dr".')
    organisation = models.CharField(max_length=200, blank=True, default="")
    specialty = models.CharField(max_length=200, blank=True, default="")

    def __str__(self) -> str:
        return f"clinician profile of user {self.user_id}"
