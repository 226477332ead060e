"""Grants: a patient's signed, time-limited, scoped, purpose-bound permission, mirrored from the chain.

The row is the database's mirror of what the ConsentRegistry contract records. The
policy decision point reads only these rows (never the chain) on the request path.

Break-glass episodes: one clinician's emergency access to one patient's record, for a bounded
window, which the patient is told of and a data steward reviews.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from consent.purposes import BreakGlassCode, Purpose


class GrantStatus(models.TextChoices):
    PENDING = "pending", "Pending (waiting for the chain)"
    RECORDED = "recorded", "Recorded on chain"
    REVOKED = "revoked", "Revoked"
    FAILED = "failed", "Rejected by the chain"


class Grant(models.Model):
    # The EIP-712 struct hash of the signed grant, 0x-prefixed hex: the same id on chain and here.
    id = models.CharField(primary_key=True, max_length=66)
    patient = models.ForeignKey("records.Patient", on_delete=models.PROTECT, related_name="grants")
    grantee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="grants_received")
    resource_types = models.JSONField(help_text='FHIR resource types, or ["*"] for all')
    categories = models.JSONField(
        default=list, blank=True, help_text='optional "system|code" categories narrowing the types'
    )
    actions = models.JSONField(help_text="read, write, run-model")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    # What the chain sees: pseudonymous addresses and a salted commitment to the scope, never PHI.
    patient_address = models.CharField(max_length=42)
    grantee_address = models.CharField(max_length=42)
    # Public nonce signed into the grant (it travels on chain).
    salt = models.CharField(max_length=66)
    # Secret salt of the scope commitment: never leaves the database, or the small scope space could be guessed.
    commitment_salt = models.CharField(max_length=66)
    scope_commitment = models.CharField(max_length=66)
    signature = models.CharField(max_length=132)
    status = models.CharField(max_length=16, choices=GrantStatus.choices, default=GrantStatus.PENDING)
    tx_hash = models.CharField(max_length=66, blank=True, default="")
    block_number = models.BigIntegerField(null=True, blank=True)
    recorded_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_signature = models.CharField(max_length=132, blank=True, default="")
    revocation_tx_hash = models.CharField(max_length=66, blank=True, default="")
    revocation_block_number = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The decision point's one query: this grantee, this patient, live grants.
            models.Index(fields=["grantee", "patient", "status"], name="consent_grant_decide"),
            models.Index(fields=["patient", "created_at"], name="consent_grant_patient"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(not_before__lt=models.F("not_after")), name="consent_grant_window_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in GrantStatus]), name="consent_grant_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status=GrantStatus.REVOKED) | Q(revoked_at__isnull=True),
                name="consent_grant_revoked_iff_revoked_at",
            ),
        ]

    def __str__(self) -> str:
        return f"grant {self.id[:10]}… {self.purpose} {self.status}"

    def effective_status(self, now: object) -> str:
        """pending / recorded / revoked / failed, or expired and not-yet-valid, as a person would say it."""
        if self.status == GrantStatus.RECORDED:
            if now >= self.not_after:  # type: ignore[operator]
                return "expired"
            if now < self.not_before:  # type: ignore[operator]
                return "not yet valid"
        return self.status


class BreakGlassEpisode(models.Model):
    """One clinician's break-glass access to one patient, from the first such read until `expires_at`.

    Opened by the first break-glass read (consent.break_glass.break_glass_admit); every read in
    the window belongs to it (the access log holds each one, flagged). A steward reviews each.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="break_glass_episodes"
    )
    patient = models.ForeignKey("records.Patient", on_delete=models.PROTECT, related_name="break_glass_episodes")
    code = models.CharField(max_length=32, choices=BreakGlassCode.choices)
    # The free text the opening request gave; each later read's own text is in its access-log entry.
    reason = models.TextField()
    opened_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="break_glass_reviews",
    )
    review_note = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            # The admission's two questions: an open episode on this patient, and how many patients today.
            models.Index(fields=["clinician", "opened_at"], name="consent_bg_clinician_opened"),
            # The steward's queue: unreviewed first, oldest first.
            models.Index(fields=["reviewed_at", "opened_at"], name="consent_bg_review_queue"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(opened_at__lt=models.F("expires_at")), name="consent_bg_window_valid"),
            models.CheckConstraint(
                condition=Q(code__in=[c.value for c in BreakGlassCode]), name="consent_bg_code_valid"
            ),
            models.CheckConstraint(
                condition=Q(reviewed_at__isnull=True, reviewed_by__isnull=True)
                | Q(reviewed_at__isnull=False, reviewed_by__isnull=False),
                name="consent_bg_reviewed_by_iff_reviewed_at",
            ),
        ]

    def __str__(self) -> str:
        return f"break-glass {str(self.id)[:8]} {self.code}"


class KeyKind(models.TextChoices):
    CREATED = "created", "Key created in the patient's browser"
    TAKEN = "taken", "Server-held key taken into the patient's browser; the server's copy destroyed"
    ROTATED = "rotated", "Key replaced, signed by the old key and the new one"
    RESET = "reset", "Key replaced by an operator-assisted reset, after its public waiting time"


class KeyRegistration(models.Model):
    """A patient-signed registration of the address her grants are signed with (append-only).

    The new key signs KeyRegistration(account, key, previous) (ledger.signing.registration_typed_data); a rotation
    is also signed by the previous key; a reset only by the new one (its authority is the chain's waiting time).
    Each one is also on chain, in ConsentRegistry's key registry (consent.key_chain).
    """

    id = models.BigAutoField(primary_key=True)
    patient = models.ForeignKey("records.Patient", on_delete=models.PROTECT, related_name="key_registrations")
    kind = models.CharField(max_length=16, choices=KeyKind.choices)
    address = models.CharField(max_length=42)
    previous_address = models.CharField(max_length=42, blank=True, default="")
    signature = models.CharField(max_length=132)
    previous_signature = models.CharField(max_length=132, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "created_at"], name="consent_keyreg_patient")]

    def __str__(self) -> str:
        return f"{self.kind} {self.address}"


class KeyResetStatus(models.TextChoices):
    REQUESTED = "requested", "Asked by the patient; waiting for the operator's identity check"
    APPROVED = "approved", "Identity checked; on chain, waiting out its delay"
    CANCELLED = "cancelled", "Refused by the patient's registered key, or by the patient before approval"
    COMPLETED = "completed", "The new key is registered"


class KeyReset(models.Model):
    """An operator-assisted replacement of a key the patient lost together with its recovery phrase.

    The new key signs KeyRegistration(account, key, previous=the lost key). After an identity check the operator
    relays it (ConsentRegistry.requestKeyReset); the chain holds it for KEY_RESET_DELAY, visible to anyone,
    the patient is told, and her registered key (if it was not lost after all) can cancel it. Then anyone
    completes it, and the chain records it as a reset, never as a rotation.
    """

    id = models.BigAutoField(primary_key=True)
    patient = models.ForeignKey("records.Patient", on_delete=models.PROTECT, related_name="key_resets")
    address = models.CharField(max_length=42)
    previous_address = models.CharField(max_length=42)
    signature = models.CharField(max_length=132)
    status = models.CharField(max_length=16, choices=KeyResetStatus.choices, default=KeyResetStatus.REQUESTED)
    approved_by = models.CharField(max_length=100, blank=True, default="")  # the operator's actor string
    ready_at = models.DateTimeField(null=True, blank=True)  # set when the chain confirmed the request
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(status__in=["requested", "approved"]),
                name="consent_keyreset_one_open",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["requested", "approved", "cancelled", "completed"]),
                name="consent_keyreset_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"reset to {self.address} ({self.status})"


class KeyBackup(models.Model):
    """The patient's optional server-held backup of her signing key: ciphertext the server cannot open.

    Her browser seals the key under AES-GCM with a key it derives from a backup passphrase (scrypt, fresh salt and
    nonce, the record id and the key's address bound as associated data) and uploads only the result and the KDF
    parameters (consent.key_backup). One current backup per record; a rotation or a reset leaves it naming a key
    that is no longer registered, which makes it stale: it is then never handed out for a restore.
    """

    patient = models.OneToOneField(
        "records.Patient", on_delete=models.CASCADE, primary_key=True, related_name="key_backup"
    )
    address = models.CharField(max_length=42)  # the key it holds, as registered when it was made
    kdf = models.JSONField(help_text='{"name": "scrypt", "N": ..., "r": ..., "p": ..., "dkLen": 32}')
    salt = models.BinaryField()
    nonce = models.BinaryField()
    ciphertext = models.BinaryField()  # AES-256-GCM of the 32-byte key, tag appended
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(address=""), name="consent_keybackup_has_address")]

    def __str__(self) -> str:
        return f"key backup of {self.address}"
