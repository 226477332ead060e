"""Diagnostic jobs: one model run on one patient's consented data, and the one result it may release.

A job row carries no health data: ids, states, counters, and the hashes its provenance
commits to. The result itself (a RiskAssessment and its Provenance) lives encrypted in
the patient's record like every other resource; `JobResult` only points at it.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from diagnostics.inference.base import reason_words


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    INSUFFICIENT_DATA = "insufficient-data", "Insufficient data"
    DENIED = "denied", "Denied (no live consent)"
    FAILED = "failed", "Failed"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.INSUFFICIENT_DATA, JobStatus.DENIED, JobStatus.FAILED})


class DiagnosticJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="diagnostic_jobs")
    patient = models.ForeignKey("records.Patient", on_delete=models.PROTECT, related_name="diagnostic_jobs")
    model_id = models.CharField(max_length=64)
    # The model's version as it was when the job was requested; the worker refuses to run another one.
    model_version = models.CharField(max_length=32)
    model_version_hash = models.CharField(max_length=80)
    purpose = models.CharField(max_length=16)
    # The grant that permitted the request; NULL for a patient's job on their own record.
    grant = models.ForeignKey("consent.Grant", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    # The date the score is for: inputs are read up to it, and back by each input's lookback.
    as_of = models.DateField()
    # True when the requester named no as-of date: `as_of` is then an upper bound (the request's day) until the
    # worker sets it to the date of the newest input the model needs, the clinical date of the assessment.
    as_of_from_inputs = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    # Short reason for denied/failed/insufficient-data ("consent-ended (...)", "missing: hdl" ...): never values.
    status_reason = models.CharField(max_length=255, blank=True, default="")
    # Why a model could not run, structured and value-free ({"input", "kind", "range", "window_days", "unit"}):
    # it outlives an erasure without saying anything about the patient's values.
    reasons = models.JSONField(default=list, blank=True)
    # The model's own words for those reasons (values, dates, the excluding condition), sealed under the
    # patient's log key (records.logtext) so an erasure leaves only a marker; open with consent.gate.access_log_text.
    reason_detail = models.TextField(blank=True, default="")
    # Percent of the declared inputs read so far (the portal shows it).
    progress = models.PositiveSmallIntegerField(default=0)
    # Every delivery of the task that started work on the job; `orderly_retries` of them ended by asking
    # for a retry (the chain was unreachable). The rest that did not finish were lost (killed worker, crash):
    # after MAX_LOST_DELIVERIES of those the job is poison and ends failed.
    deliveries = models.PositiveIntegerField(default=0)
    orderly_retries = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The client's Idempotency-Key (empty: none sent): a retry with the same key finds this job instead of
    # making a second one. The fingerprint (sha256 of what was asked) tells a retry from a different request.
    idempotency_key = models.CharField(max_length=128, blank=True, default="")
    idempotency_fingerprint = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["patient", "created_at"], name="diag_job_patient"),
            models.Index(fields=["requester", "created_at"], name="diag_job_requester"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["requester", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="diag_job_idempotency_key_once",
            ),
            models.CheckConstraint(condition=Q(status__in=[s.value for s in JobStatus]), name="diag_job_status_valid"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="diag_job_progress_percent"),
            models.CheckConstraint(
                # Sorted: a frozenset's order changes between processes, and so would the migration.
                condition=Q(finished_at__isnull=True) | Q(status__in=sorted(s.value for s in TERMINAL_STATUSES)),
                name="diag_job_finished_iff_terminal",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} {self.model_id} {self.status}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def reason_lines(self) -> list[str]:
        """Each structured reason in plain words (no values: those are in the sealed detail)."""
        return [reason_words(reason) for reason in self.reasons or ()]


class JobResult(models.Model):
    """What a succeeded job released: at most one per job, enforced by the primary key.

    Written in the same transaction as the RiskAssessment, its Provenance and the job's
    terminal state, so a second delivery that somehow got this far fails on the key and
    rolls its whole release back.
    """

    job = models.OneToOneField(DiagnosticJob, primary_key=True, on_delete=models.PROTECT, related_name="result")
    risk_assessment_ref = models.CharField(max_length=140, unique=True)  # "RiskAssessment/<id>/_history/<n>"
    provenance_ref = models.CharField(max_length=140, unique=True)
    # sha256 (hex) over the inputs' stored canonical bytes in the order read (length-prefixed).
    input_commitment = models.CharField(max_length=64)
    # sha256 (hex) over the released RiskAssessment's canonical JSON without meta.
    output_hash = models.CharField(max_length=64)
    input_refs = models.JSONField(default=list)
    released_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"result of job {self.job_id}"


class JobDispatch(models.Model):
    """The dispatch outbox of a job: written in the transaction that accepts the job, so an accepted job is
    never without the promise to reach the broker.

    The broker is a delivery mechanism, not the record: `published_at` NULL means the dispatcher still owes
    the broker a message (on commit, or beat's next tick when the broker was down); once published, the
    sweeper looks for the job's message in the broker after `JOB_REDISPATCH_SECONDS` and re-publishes a job
    that is still not terminal and whose message is gone (a Redis that lost its data, a failed retry publish).
    """

    job = models.OneToOneField(DiagnosticJob, primary_key=True, on_delete=models.CASCADE, related_name="dispatch")
    published_at = models.DateTimeField(null=True, blank=True)
    # Messages published for this job (the first and every re-dispatch).
    publishes = models.PositiveIntegerField(default=0)
    # Failed publishes in a row, and when the dispatcher may try again.
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # Type of the last publish error only (never a message: it could quote the broker URL).
    last_error = models.CharField(max_length=120, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["published_at", "next_attempt_at"], name="diag_dispatch_due")]

    def __str__(self) -> str:
        return f"dispatch of job {self.job_id}"
