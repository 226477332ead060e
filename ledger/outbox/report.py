"""What one relay pass did, and when a message that hit an error is tried again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ledger.models import OutboxMessage, OutboxStatus


@dataclass
class RelayReport:
    """What one relay pass did."""

    sent: int = 0  # signed and sent for the first time
    rebroadcast: int = 0  # the same bytes sent again
    confirmed: int = 0
    failed: int = 0
    waiting: int = 0  # sent and not confirmed yet, or held behind another message
    deferred: int = 0  # backed off after an error
    reorged: int = 0  # confirmed, then lost with its block: back to sent, to be rebroadcast
    unavailable: bool = False  # the pass stopped because the chain node was down

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


def outbox_backoff(*, attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones: BASE * 2**(attempts - 1), capped at MAX."""
    base, cap = settings.OUTBOX_BACKOFF_BASE_SECONDS, settings.OUTBOX_BACKOFF_MAX_SECONDS
    return timedelta(seconds=min(cap, base * 2 ** min(max(attempts, 1) - 1, 32)))


def _back_off(ids: Iterable[int], *, error: str) -> int:
    now = timezone.now()
    count = 0
    with transaction.atomic():
        for message in OutboxMessage.objects.select_for_update().filter(
            pk__in=list(ids), status__in=[OutboxStatus.PENDING, OutboxStatus.SENT]
        ):
            message.attempts += 1
            message.last_attempt_at = now
            message.next_attempt_at = now + outbox_backoff(attempts=message.attempts)
            message.last_error = error[:200]
            message.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at", "last_error"])
            count += 1
    return count
