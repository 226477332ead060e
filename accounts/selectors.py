"""Account reads: a user's notifications."""

from __future__ import annotations

from accounts.models import Notification, User


def notifications_for(*, user: User, unread_only: bool = False, limit: int = 50) -> list[Notification]:
    """The user's notifications, newest first; only the unread ones when `unread_only`."""
    notices = Notification.objects.filter(user=user)
    if unread_only:
        notices = notices.filter(read_at__isnull=True)
    return list(notices.order_by("-created_at", "-pk")[:limit])
