"""What an operator sees of the backlog: /healthz (database reads only) and `manage.py system_status`."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
import redis
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone

from diagnostics.dispatch import job_dispatch_add
from diagnostics.management.commands.system_status import _stuck
from diagnostics.models import DiagnosticJob, JobDispatch
from diagnostics.services import diagnostic_job_request
from tests.diagnostics.jobs_support import *  # noqa: F403
from tests.diagnostics.jobs_support import SPEC

pytestmark = pytest.mark.django_db

SHARED_REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _owed_job(alice_record, patient_user) -> DiagnosticJob:  # type: ignore[no-untyped-def]
    job = diagnostic_job_request(requester=patient_user, patient=alice_record, model_id=SPEC.id, enqueue=False)
    with transaction.atomic():
        job_dispatch_add(job_ids=[str(job.id)], publish=False)
    return job


def test_healthz_shows_jobs_owed_to_the_broker_and_the_chain_outbox_backlog(seam_model, alice_record, patient_user):
    _owed_job(alice_record, patient_user)

    body = json.loads(Client().get("/healthz").content)

    assert body["backlog"]["jobs"]["undispatched"] == 1
    assert body["backlog"]["jobs"]["open"] == 1
    assert body["backlog"]["chain_outbox"]["pending"] == 0
    assert "without_broker_message" not in body["backlog"]["jobs"]  # no Redis scan on the probe


def test_system_status_names_an_open_job_the_broker_holds_no_message_for(
    seam_model, alice_record, patient_user, settings, capsys
):
    try:
        redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"needs Redis at {SHARED_REDIS}")
    settings.CELERY_BROKER_URL = SHARED_REDIS
    job = _owed_job(alice_record, patient_user)
    past = timezone.now() - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS + 1)
    JobDispatch.objects.filter(job=job).update(published_at=past)  # published once, and the message is gone
    DiagnosticJob.objects.filter(pk=job.pk).update(updated_at=past)

    with pytest.raises(SystemExit) as exited:
        call_command("system_status", "--json")

    report = json.loads(capsys.readouterr().out)
    assert exited.value.code == 1
    assert report["jobs"]["without_broker_message"] == 1
    assert report["problems"][0].startswith("1 open job(s) without a broker message")


def test_a_relayer_nonce_ahead_of_the_chain_is_reported_stuck():
    assert _stuck({}, {"relayer_next_nonce": 7, "chain_nonce_pending": 5}) == [
        "relayer nonce 7 is ahead of the chain's 5: the chain lost transactions"
    ]
    assert _stuck({"without_broker_message": 0}, {"relayer_next_nonce": 5, "chain_nonce_pending": 5}) == []
