"""The API's own writes: the token endpoint's failure count (OAuth clients are throttled like people signing in)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from api.models import TokenRequestFailure

logger = logging.getLogger(__name__)


def _window_start() -> datetime:
    return timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def token_requests_throttled(*, address: str | None) -> bool:
    """Whether this address failed at the token endpoint OAUTH_TOKEN_FAILURE_LIMIT times within the window."""
    recent = TokenRequestFailure.objects.filter(address=address, at__gte=_window_start()).count()
    return recent >= settings.OAUTH_TOKEN_FAILURE_LIMIT


def token_request_failure_record(*, address: str | None) -> TokenRequestFailure:
    """Count one failed token request; rows older than the window are dropped on the way."""
    failure = TokenRequestFailure.objects.create(address=address, at=timezone.now())
    TokenRequestFailure.objects.filter(at__lt=_window_start()).delete()
    logger.info("oauth token request failed")
    return failure
