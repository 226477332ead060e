"""Celery tasks of the access log. Beat runs the sealer every AUDIT_CHECKPOINT_SECONDS, and the anchorer
at the same pace (it anchors only when AUDIT_ANCHOR_ENTRIES or AUDIT_ANCHOR_SECONDS say so)."""

from __future__ import annotations

from celery import shared_task

from audit.anchoring import access_log_anchor
from audit.services import access_log_seal


@shared_task(name="audit.tasks.access_log_seal_task", acks_late=True, ignore_result=True)
def access_log_seal_task() -> int:
    """Seal whatever is pending. Idempotent: a duplicate delivery finds nothing left to seal.

    Overlapping runs are safe: the sealer's lock serialises them.
    """
    return sum(checkpoint.size for checkpoint in access_log_seal())


@shared_task(name="audit.tasks.access_log_anchor_task", acks_late=True, ignore_result=True)
def access_log_anchor_task() -> list[int]:
    """Queue the anchors that are due through the outbox; returns their ids.

    Idempotent: a duplicate delivery finds nothing due. Overlapping runs are safe: the anchor table's
    live-range constraints let only one of them queue a given range.
    """
    return [anchor.pk for anchor in access_log_anchor()]
