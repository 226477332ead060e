"""The log's unprotected tail, and the maximum merge delay that bounds it.

An entry is protected against a database writer once it is sealed (a signed checkpoint covers it) and
anchored (a root over it is on chain, or held by a witness outside the database). Until then an attacker
with write access can edit, delete or forge it without a trace: that is the unprotected window. The
maximum merge delay (`AUDIT_MAX_MERGE_DELAY_SECONDS`) is the promise that bounds it: `verify_access_log`
reports every entry older than it that is still unsealed, or sealed and not anchored, as a failure, and
states the exact window on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, Min
from django.utils import timezone

from audit.models import AccessLogAnchor, AccessLogEntry, AnchorStatus


@dataclass(frozen=True)
class Exposure:
    """What is not yet protected, as of `now`."""

    now: datetime
    max_merge_delay: timedelta
    unsealed: int
    oldest_unsealed_at: datetime | None
    anchored_through_seq: int  # -1: nothing anchored yet
    unanchored: int  # sealed entries after the last anchored seq
    oldest_unanchored_at: datetime | None

    @property
    def overdue_unsealed(self) -> bool:
        return self.oldest_unsealed_at is not None and self.now - self.oldest_unsealed_at > self.max_merge_delay

    @property
    def overdue_unanchored(self) -> bool:
        return self.oldest_unanchored_at is not None and self.now - self.oldest_unanchored_at > self.max_merge_delay

    @property
    def window(self) -> timedelta:
        """How far back an entry may still be changed without a trace: to the oldest unprotected entry."""
        oldest = [at for at in (self.oldest_unsealed_at, self.oldest_unanchored_at) if at is not None]
        return self.now - min(oldest) if oldest else timedelta(0)

    def describe(self) -> str:
        def age(at: datetime | None) -> str:
            return f"oldest {(self.now - at).total_seconds():.0f} s old" if at is not None else "none"

        return (
            f"unprotected window {self.window.total_seconds():.0f} s "
            f"(maximum merge delay {self.max_merge_delay.total_seconds():.0f} s): "
            f"{self.unsealed} entries not sealed ({age(self.oldest_unsealed_at)}), "
            f"{self.unanchored} sealed entries after seq {self.anchored_through_seq} not anchored "
            f"({age(self.oldest_unanchored_at)})"
        )

    def failures(self) -> list[str]:
        limit = f"the maximum merge delay of {self.max_merge_delay.total_seconds():.0f} s"
        problems = []
        if self.overdue_unsealed:
            problems.append(f"entries older than {limit} are still not sealed (the sealer is not running?)")
        if self.overdue_unanchored:
            problems.append(f"sealed entries older than {limit} are still not anchored (is the chain down?)")
        return problems


def access_log_exposure(*, now: datetime | None = None) -> Exposure:
    """Measure the unprotected tail: unsealed entries, and sealed ones past the last anchor the chain holds."""
    now = now or timezone.now()
    unsealed = AccessLogEntry.objects.filter(seq__isnull=True)  # the sealer's partial index: stays small
    unsealed_oldest = unsealed.aggregate(oldest=Min("at"))["oldest"]
    anchored = AccessLogAnchor.objects.filter(status=AnchorStatus.ANCHORED).aggregate(last=Max("last_seq"))["last"]
    through = -1 if anchored is None else int(anchored)
    tail = AccessLogEntry.objects.filter(seq__gt=through)
    tail_oldest = tail.aggregate(oldest=Min("at"))["oldest"]
    return Exposure(
        now=now,
        max_merge_delay=timedelta(seconds=settings.AUDIT_MAX_MERGE_DELAY_SECONDS),
        unsealed=unsealed.count() if unsealed_oldest is not None else 0,
        oldest_unsealed_at=unsealed_oldest,
        anchored_through_seq=through,
        unanchored=tail.count() if tail_oldest is not None else 0,
        oldest_unanchored_at=tail_oldest,
    )
