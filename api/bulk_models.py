"""What a bulk export keeps: the accepted job (its own dispatch outbox) and its sealed ndjson segments.

Declared here and imported by api.models, so the export's tables stay beside the rest of the API's.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from consent.purposes import Purpose
from records.models import Patient


class ExportStatus(models.TextChoices):
    ACCEPTED = "accepted"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


OPEN_STATUSES = (ExportStatus.ACCEPTED, ExportStatus.RUNNING)


class ExportJob(models.Model):
    """One accepted FHIR Bulk Data export, from kick-off to expiry.

    The row is its own dispatch outbox (as diagnostics.JobDispatch is a job's): it is written by the
    kick-off's transaction, `published_at` NULL says the broker is still owed a message, and the beat
    task republishes an open export that has not moved for a while. The worker's position (`cursor`)
    is saved with every chunk, so a redelivered message resumes where the last chunk committed.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # The OAuth client that asked: only that client, for that user, may poll, cancel and download.
    application_id = models.BigIntegerField(null=True, blank=True)
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    # A SMART token with `patient/` scopes (launch context): the export reaches that record only.
    patient_context = models.UUIDField(null=True, blank=True)
    # "patient" (Patient/$export), "group" (Group/{id}/$export) or "system" ($export, a backend service's)
    kind = models.CharField(max_length=8)
    request_url = models.TextField()
    resource_types = models.JSONField(default=list)
    since = models.DateTimeField(null=True, blank=True)
    type_filters = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=ExportStatus.choices, default=ExportStatus.ACCEPTED)
    # The cohort, frozen when the export starts: record ids, in the order they are exported.
    patient_ids = models.JSONField(default=list)
    cursor = models.JSONField(default=dict)
    # Records whose export stopped because the caller's grant ended during it.
    stopped = models.JSONField(default=list)
    resources = models.PositiveIntegerField(default=0)
    patients_done = models.PositiveIntegerField(default=0)
    transaction_time = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    publishes = models.PositiveIntegerField(default=0)
    # A short, PHI-free reason when the export failed.
    error = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["status", "updated_at"], name="api_export_open"),
            models.Index(fields=["expires_at"], name="api_export_expiry"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in ExportStatus]), name="api_export_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=["patient", "group", "system"]), name="api_export_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"export {self.id} ({self.status})"


class ExportSegment(models.Model):
    """One patient's chunk of one type: ndjson lines sealed under that patient's key (records.bulk_files)."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(ExportJob, on_delete=models.CASCADE, related_name="segments")
    resource_type = models.CharField(max_length=64)
    seq = models.PositiveIntegerField()
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    count = models.PositiveIntegerField()
    sealed = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="api_exportsegment_seq_unique")]
        indexes = [models.Index(fields=["job", "resource_type", "seq"], name="api_exportsegment_file")]

    def __str__(self) -> str:
        return f"segment {self.seq} of export {self.job_id}"
