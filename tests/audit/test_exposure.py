"""The maximum merge delay: the unprotected tail is measured, stated, and a failure once older than the delay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from audit.exposure import access_log_exposure
from audit.models import AccessLogEntry
from audit.services import access_log_append_many, access_log_insert
from tests.audit.anchor_support import anchor_and_relay, seal
from tests.audit.conftest import event

pytestmark = pytest.mark.django_db


def test_an_empty_log_has_no_unprotected_window(db):
    exposure = access_log_exposure()

    assert (exposure.unsealed, exposure.unanchored, exposure.window, exposure.failures()) == (0, 0, timedelta(0), [])


def test_fresh_unsealed_and_unanchored_entries_are_the_window_but_not_failures(settings):
    settings.AUDIT_MAX_MERGE_DELAY_SECONDS = 600
    seal(8, per_checkpoint=4)
    with transaction.atomic():
        access_log_append_many(events=[event(100), event(101)])

    exposure = access_log_exposure()

    assert (exposure.unsealed, exposure.unanchored, exposure.anchored_through_seq) == (2, 8, -1)
    assert exposure.window < timedelta(seconds=60)
    assert exposure.failures() == []
    assert exposure.describe().startswith("unprotected window ")
    assert "2 entries not sealed" in exposure.describe()
    assert "8 sealed entries after seq -1 not anchored" in exposure.describe()


def test_an_entry_older_than_the_delay_still_unsealed_is_a_failure(settings):
    settings.AUDIT_MAX_MERGE_DELAY_SECONDS = 600
    # A forged entry slipped in with an old time, or a sealer that stopped: either way, past the promise.
    with transaction.atomic():
        access_log_insert(event=event(1), at=timezone.now() - timedelta(seconds=601))

    exposure = access_log_exposure()

    assert exposure.window > timedelta(seconds=600)
    assert exposure.failures() == [
        "entries older than the maximum merge delay of 600 s are still not sealed (the sealer is not running?)"
    ]


def test_sealed_entries_older_than_the_delay_not_anchored_are_a_failure_until_anchored(chain, settings):
    settings.AUDIT_MAX_MERGE_DELAY_SECONDS = 600
    seal(4, per_checkpoint=4)
    AccessLogEntry.objects.update(at=timezone.now() - timedelta(seconds=700))

    assert access_log_exposure().failures() == [
        "sealed entries older than the maximum merge delay of 600 s are still not anchored (is the chain down?)"
    ]

    anchor_and_relay()

    exposure = access_log_exposure()
    assert (exposure.anchored_through_seq, exposure.unanchored, exposure.failures()) == (3, 0, [])
