"""Studies, their members, patients' participations, analysis runs and releases.

A study is one machine-readable spec, hashed (research.specs). Its state changes only through
research.services.study_transition. A participation is a patient's grant to the study's own
grantee account (one per study: the chain sees only its pseudonymous address). A run freezes the
cohort and commits to it; per-chunk sufficient statistics are combined, never per-patient rows.
Nothing here holds a patient's record data.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class StudyState(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    IN_REVIEW = "in-review", "In review"
    RETURNED = "returned", "Returned with comments"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    RECRUITING = "recruiting", "Recruiting"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    REVOKED = "revoked", "Revoked"
    WITHDRAWN = "withdrawn", "Withdrawn by the researcher"
    CLOSED = "closed", "Closed"


class Study(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    spec = models.JSONField()
    # sha256 of the canonical spec (research.specs.spec_hash): what the steward approved and patients joined.
    spec_hash = models.CharField(max_length=71)
    version = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=16, choices=StudyState.choices, default=StudyState.DRAFT)
    conditions = models.TextField(blank=True, default="", help_text="the steward's conditions of approval")
    ends_at = models.DateTimeField()
    # The study's own grantee: patients grant to it, runs read as it. Never signs in.
    account = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="study_account"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(condition=Q(state__in=[s.value for s in StudyState]), name="research_study_state"),
        ]

    def __str__(self) -> str:
        return f"study {str(self.id)[:8]} {self.state}"


class MemberRole(models.TextChoices):
    PI = "pi", "Principal investigator"
    CO_INVESTIGATOR = "co-investigator", "Co-investigator"


class StudyMember(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="study_memberships")
    role = models.CharField(max_length=16, choices=MemberRole.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "user"], name="research_member_once"),
            models.UniqueConstraint(fields=["study"], condition=Q(role="pi"), name="research_one_pi"),
        ]

    def __str__(self) -> str:
        return f"{self.role} of {self.study_id}"


class StudyDecision(models.Model):
    """One state transition: who, from, to, why. The access log holds the same, hash-chained."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="decisions")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    from_state = models.CharField(max_length=16)
    to_state = models.CharField(max_length=16)
    reason = models.TextField(blank=True, default="")
    spec_hash = models.CharField(max_length=71)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.from_state} -> {self.to_state}"


class Participation(models.Model):
    """A patient's opt-in to one study version: their grant to the study's account."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="participations")
    patient = models.ForeignKey("records.Patient", on_delete=models.PROTECT, related_name="participations")
    grant = models.OneToOneField("consent.Grant", on_delete=models.PROTECT, related_name="participation")
    spec_hash = models.CharField(max_length=71)
    joined_at = models.DateTimeField(auto_now_add=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "patient"], condition=Q(withdrawn_at__isnull=True), name="research_join_once"
            ),
        ]

    def __str__(self) -> str:
        return f"participation {str(self.id)[:8]}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    BLOCKED = "blocked", "Blocked by disclosure control"
    FAILED = "failed", "Failed"


class AnalysisRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="runs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    analysis_id = models.CharField(max_length=64)
    analysis_version = models.CharField(max_length=16)
    code_hash = models.CharField(max_length=71)
    params = models.JSONField(default=dict)
    # sha256 over (analysis id, version, params): "the same analysis" for differencing.
    analysis_key = models.CharField(max_length=71)
    spec_hash = models.CharField(max_length=71)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    status_reason = models.CharField(max_length=255, blank=True, default="")
    cohort_size = models.PositiveIntegerField(default=0)
    # RFC 6962 root over the frozen cohort's leaves (research.cohort), and the leaves in order.
    cohort_root = models.CharField(max_length=64, blank=True, default="")
    cohort_leaves = models.BinaryField(default=b"")
    chunks_total = models.PositiveIntegerField(default=0)
    # An analysis fitted over rounds (logistic regression): the round and its coefficients, never a row.
    iteration = models.JSONField(null=True, blank=True)
    # When its start message was last handed to the broker (research.sweep re-sends a lost one).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Aggregate table and the disclosure report (research.disclosure), set when the run ends.
    result = models.JSONField(null=True, blank=True)
    report = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(status__in=[s.value for s in RunStatus]), name="research_run_status"),
        ]

    def __str__(self) -> str:
        return f"run {str(self.id)[:8]} {self.analysis_id} {self.status}"


class RunMember(models.Model):
    """Who is in a run's frozen cohort: membership only, never a value. Differencing compares these."""

    run = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="members")
    participation = models.ForeignKey(Participation, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey("records.Patient", on_delete=models.PROTECT, related_name="+")
    chunk = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "patient"], name="research_run_member_once")]
        indexes = [models.Index(fields=["run", "chunk"], name="research_run_chunk")]

    def __str__(self) -> str:
        return f"member of run {self.run_id}"


class RunChunk(models.Model):
    """One chunk's sufficient statistics (sums over its participants), cleared once combined."""

    run = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    round = models.PositiveIntegerField(default=0)
    done = models.BooleanField(default=False)
    # When this chunk's message (for its round) was last handed to the broker.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    partial = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="research_chunk_once")]

    def __str__(self) -> str:
        return f"chunk {self.index} of run {self.run_id}"


class ReleaseStatus(models.TextChoices):
    PENDING = "pending", "Waiting for output check"
    RELEASED = "released", "Released"
    REFUSED = "refused", "Refused"


class Release(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.OneToOneField(AnalysisRun, on_delete=models.PROTECT, related_name="release")
    status = models.CharField(max_length=16, choices=ReleaseStatus.choices, default=ReleaseStatus.PENDING)
    checks_needed = models.PositiveSmallIntegerField(default=1)
    requested_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)
    provenance = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"release {str(self.id)[:8]} {self.status}"


class OutputCheck(models.Model):
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="checks")
    checker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approve = models.BooleanField()
    comment = models.TextField(blank=True, default="")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["release", "checker"], name="research_check_once")]

    def __str__(self) -> str:
        return f"check {'approve' if self.approve else 'refuse'} of {self.release_id}"


class OnChange(models.TextChoices):
    ASK = "ask", "Ask me again"
    NOTIFY = "notify", "Tell me, and keep me in unless I object within 14 days"


def default_duo() -> list[str]:
    return ["GRU"]


class ResearchPreference(models.Model):
    """A patient's standing research preferences (research.preferences): the uses of her data she would be
    invited to (DUO codes), whether studies may find her before she joins (feasibility counts), and
    what happens when a study she joined changes."""

    patient = models.OneToOneField("records.Patient", on_delete=models.CASCADE, related_name="research_preference")
    duo = models.JSONField(default=default_duo)
    findable = models.BooleanField(default=False)
    on_change = models.CharField(max_length=8, choices=OnChange.choices, default=OnChange.ASK)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"research preferences of {self.patient_id}"


class ChangeNotice(models.Model):
    """A participant who chose to be told of a change: her join carries over to the new version unless she
    objects before `due_at` (research.preferences.change_notices_settle)."""

    participation = models.ForeignKey(Participation, on_delete=models.CASCADE, related_name="change_notices")
    spec_hash = models.CharField(max_length=71)
    notified_at = models.DateTimeField(auto_now_add=True)
    due_at = models.DateTimeField()
    objected_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=24, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["participation", "spec_hash"], name="research_notice_once"),
        ]

    def __str__(self) -> str:
        return f"change notice {self.pk} {self.outcome or 'open'}"


class FeasibilityQuery(models.Model):
    """One feasibility count asked before approval: who asked, the query's hash, the obfuscated answer.
    A repeated query returns its stored answer and costs no quota; never a list of patients."""

    researcher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    query_hash = models.CharField(max_length=71)
    query = models.JSONField()
    answer = models.JSONField()
    asked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["researcher", "asked_at"], name="research_feasibility_quota")]

    def __str__(self) -> str:
        return f"feasibility query {self.query_hash[:15]}"
