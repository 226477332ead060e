from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Deployment(models.Model):
    """One deployed ConsentRegistry: where it lives and which compiled artifact it runs.

    The client uses the newest deployment on its chain whose artifact hash matches the artifact in
    this checkout, so an ABI that changed under an old contract is never used by accident.
    """

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)  # checksummed 0x address
    deploy_tx = models.CharField(max_length=66)
    block = models.PositiveBigIntegerField()
    artifact_hash = models.CharField(max_length=64)  # sha256 hex of the creation bytecode
    operator = models.CharField(max_length=42)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="ledger_deployment_unique_address"),
        ]
        indexes = [models.Index(fields=["chain_id", "artifact_hash", "-created_at"], name="ledger_deploy_lookup")]

    def __str__(self) -> str:
        return f"ConsentRegistry {self.address} on chain {self.chain_id}"


class OutboxKind(models.TextChoices):
    GRANT = "grant", "Record a grant"
    REVOKE = "revoke", "Record a revocation"
    ANCHOR = "anchor", "Anchor the access log"
    KEY = "key", "Register or rotate a patient's key"
    KEY_RESET = "key_reset", "Request an operator-assisted key reset (time-locked)"
    KEY_RESET_CANCEL = "key_reset_cancel", "Cancel a pending key reset"
    KEY_RESET_DONE = "key_reset_done", "Complete a key reset after its delay"


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending (not signed yet)"
    SENT = "sent", "Signed and sent, waiting for confirmations"
    CONFIRMED = "confirmed", "Confirmed on chain"
    FAILED = "failed", "Refused by the chain"


class OutboxMessage(models.Model):
    """One chain write, written in the same transaction as the change it records; the relay sends it.

    Once a message has a nonce and raw transaction it is `sent` for good: the relay only ever resends
    those exact bytes (same hash), so the chain can never see two transactions for one message. The
    payload holds addresses, commitments and signatures only, never PHI.
    """

    kind = models.CharField(max_length=16, choices=OutboxKind.choices)
    # What the write is about, in the caller's terms (a grant id, a checkpoint number): the idempotency key.
    ref = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True, default="")  # an error type or revert name, never a value
    # Set together when the relay signs: which chain, which relayer account, which nonce, what bytes.
    chain_id = models.PositiveBigIntegerField(null=True, blank=True)
    sender = models.CharField(max_length=42, blank=True, default="")
    nonce = models.PositiveBigIntegerField(null=True, blank=True)
    raw_tx = models.BinaryField(null=True, blank=True)
    tx_hash = models.CharField(max_length=66, blank=True, default="")
    broadcast_at = models.DateTimeField(null=True, blank=True)  # last time the node accepted the bytes
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "ref"], name="ledger_outbox_unique_write"),
            # Two messages never hold the same nonce: at most one of them could ever be mined.
            models.UniqueConstraint(
                fields=["chain_id", "sender", "nonce"],
                condition=Q(nonce__isnull=False),
                name="ledger_outbox_unique_nonce",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in OutboxKind]), name="ledger_outbox_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in OutboxStatus]), name="ledger_outbox_status_valid"
            ),
            # Pending means "never signed": a message with bytes cannot go back to pending.
            models.CheckConstraint(
                condition=~Q(status=OutboxStatus.PENDING) | (Q(raw_tx__isnull=True) & Q(nonce__isnull=True)),
                name="ledger_outbox_pending_unsigned",
            ),
            models.CheckConstraint(
                condition=~Q(status=OutboxStatus.SENT)
                | (Q(raw_tx__isnull=False) & Q(nonce__isnull=False) & ~Q(tx_hash="")),
                name="ledger_outbox_sent_signed",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="ledger_outbox_due")]

    def __str__(self) -> str:
        return f"outbox {self.kind} {self.ref[:18]} {self.status}"


class RelayerState(models.Model):
    """The relay's singleton row: its lock, and the next nonce of the relayer account on its chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    chain_id = models.PositiveBigIntegerField(null=True, blank=True)
    sender = models.CharField(max_length=42, blank=True, default="")
    next_nonce = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="ledger_relayer_state_singleton")]

    def __str__(self) -> str:
        return f"relayer {self.sender} next nonce {self.next_nonce} on chain {self.chain_id}"
