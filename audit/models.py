"""The access log: one row per decision about patient data, append-only.

Rows are written by services in the same transaction as the operation they
describe. A sealer later gives committed rows a dense `seq` and covers them with
signed Merkle checkpoints (RFC 6962 leaves and nodes); only the sealer writes `seq`.
"""

from __future__ import annotations

from django.db import models


class Outcome(models.TextChoices):
    PERMIT = "permit", "Permit"
    DENY = "deny", "Deny"


class AccessLogEntry(models.Model):
    id = models.BigAutoField(primary_key=True)
    # Dense position in the log, assigned when the entry is sealed into a checkpoint (unique once set).
    seq = models.BigIntegerField(null=True, blank=True)
    at = models.DateTimeField()
    # "user:<id>", "job:<id>", "system:<command>": pseudonymous, never a name.
    actor = models.CharField(max_length=64)
    # Indexed by (patient_ref, at) below; every read appends a row, so no index here that one covers.
    patient_ref = models.UUIDField(null=True, blank=True)
    action = models.CharField(max_length=64)
    purpose = models.CharField(max_length=16, blank=True, default="")
    grant_ref = models.CharField(max_length=80, blank=True, default="")
    resource_ids = models.JSONField(default=list, blank=True)
    query = models.TextField(blank=True, default="")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    job_id = models.CharField(max_length=64, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    break_glass = models.BooleanField(default=False)

    class Meta:
        # Every logged access writes each of these: an index is here only while a query needs it.
        # (None asks by actor yet; an investigation of one actor's accesses would add (actor, at).)
        indexes = [
            models.Index(fields=["patient_ref", "at"], name="audit_entry_patient_at"),
            # The sealer's queue: only unsealed rows, in id order; stays tiny however long the log grows.
            models.Index(fields=["id"], condition=models.Q(seq__isnull=True), name="audit_entry_unsealed"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(outcome__in=["permit", "deny"]), name="audit_entry_outcome_valid"
            ),
            # Partial: an unsealed entry (every new one) costs this index nothing until the sealer numbers it.
            models.UniqueConstraint(
                fields=["seq"], condition=models.Q(seq__isnull=False), name="audit_entry_seq_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.outcome} #{self.seq if self.seq is not None else '-'}"


class AccessLogCheckpoint(models.Model):
    """A signed Merkle checkpoint over the entries with first_seq <= seq <= last_seq.

    `leaves` keeps every leaf hash (32 bytes each, in seq order) so verification can
    name the exact first bad entry and proofs need no entry but the one proved.
    `prev_root` chains each checkpoint to the one before it (32 zero bytes for the
    first). The signature covers all of it (audit.signing.checkpoint_message); the key
    lives outside the database. Anchoring on chain adds its own rows that point here,
    so a checkpoint never changes after it is written.
    """

    id = models.BigAutoField(primary_key=True)
    first_seq = models.BigIntegerField(unique=True)
    last_seq = models.BigIntegerField(unique=True)
    root = models.BinaryField(max_length=32)
    prev_root = models.BinaryField(max_length=32)
    leaves = models.BinaryField()
    created_at = models.DateTimeField()
    # SHA-256 of the raw Ed25519 public key, hex: says which key signed, for rotation and for error messages.
    key_fingerprint = models.CharField(max_length=64)
    signature = models.BinaryField(max_length=64)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(first_seq__gte=0) & models.Q(last_seq__gte=models.F("first_seq")),
                name="audit_checkpoint_range_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"checkpoint {self.first_seq}..{self.last_seq}"

    @property
    def size(self) -> int:
        return self.last_seq - self.first_seq + 1


class AccessLogSealState(models.Model):
    """The sealer's singleton row: its lock, the next seq to hand out, and the newest checkpoint's root."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    next_seq = models.BigIntegerField(default=0)
    head_root = models.BinaryField(max_length=32, default=bytes(32))

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audit_seal_state_singleton")]

    def __str__(self) -> str:
        return f"sealed up to seq {self.next_seq - 1}"


class AnchorStatus(models.TextChoices):
    PENDING = "pending", "Queued for the chain"
    ANCHORED = "anchored", "Anchored on chain"
    FAILED = "failed", "Refused by the chain"


class AccessLogAnchor(models.Model):
    """One on-chain anchor: the RFC 6962 root over the leaves of a run of whole consecutive checkpoints.

    It covers the entries first_seq..last_seq and is sent as `anchor(root, last_seq + 1)`: the size on
    chain is the count of entries anchored so far, so each anchor's range starts where the previous
    one on chain ended and anyone can read the ranges off the chain alone. A failed anchor stays as
    history; the next anchoring run covers its range again (the constraints only bind live anchors).
    """

    id = models.BigAutoField(primary_key=True)
    # The last checkpoint covered; the range ends exactly where it ends.
    checkpoint = models.ForeignKey(AccessLogCheckpoint, on_delete=models.PROTECT, related_name="anchors")
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    root = models.BinaryField(max_length=32)
    status = models.CharField(max_length=16, choices=AnchorStatus.choices, default=AnchorStatus.PENDING)
    tx_hash = models.CharField(max_length=66, blank=True, default="")
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    anchored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(first_seq__gte=0) & models.Q(last_seq__gte=models.F("first_seq")),
                name="audit_anchor_range_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in AnchorStatus]), name="audit_anchor_status_valid"
            ),
            # Two anchorers racing for the same range: the second insert fails instead of anchoring twice.
            models.UniqueConstraint(
                fields=["first_seq"], condition=~models.Q(status="failed"), name="audit_anchor_live_first_seq"
            ),
            models.UniqueConstraint(
                fields=["last_seq"], condition=~models.Q(status="failed"), name="audit_anchor_live_last_seq"
            ),
        ]
        indexes = [models.Index(fields=["status", "last_seq"], name="audit_anchor_status_seq")]

    def __str__(self) -> str:
        return f"anchor {self.first_seq}..{self.last_seq} {self.status}"

    @property
    def size(self) -> int:
        """The size sent on chain: entries anchored from the start of the log up to and including last_seq."""
        return self.last_seq + 1
