"""At-least-once delivery made harmless: lost deliveries counted, poison jobs failed, errors contained."""

from __future__ import annotations

import pytest
from django.conf import settings

from diagnostics import services
from diagnostics.models import DiagnosticJob, JobResult
from diagnostics.services import delivery, diagnostic_job_execute, diagnostic_job_request
from diagnostics.tasks import diagnostic_job_run, diagnostic_jobs_run_batch
from tests.diagnostics.jobs_support import *  # noqa: F403
from tests.diagnostics.jobs_support import SPEC

pytestmark = pytest.mark.django_db


def test_the_task_is_acknowledged_late_rejected_when_its_worker_is_lost_and_time_limited():
    for task in (diagnostic_job_run, diagnostic_jobs_run_batch):
        assert (task.acks_late, task.reject_on_worker_lost) == (True, True)
        assert 0 < task.soft_time_limit < task.time_limit
    assert diagnostic_job_run.time_limit == settings.CELERY_TASK_TIME_LIMIT
    # Redis redelivers an unacknowledged message after the visibility timeout: it must outlast the
    # longest run, or a healthy job would be delivered twice while it still runs.
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility > diagnostic_jobs_run_batch.time_limit == diagnostic_job_run.time_limit


def test_a_job_whose_deliveries_were_lost_five_times_ends_failed_without_a_sixth_run(
    seam_model, alice_record, patient_user
):
    job = diagnostic_job_request(requester=patient_user, patient=alice_record, model_id=SPEC.id)
    for _ in range(services.MAX_LOST_DELIVERIES):
        assert delivery._delivery_begin(str(job.id)) is not None  # started, then the worker died: never finished

    outcome = diagnostic_job_execute(job_id=str(job.id))

    job.refresh_from_db()
    assert (outcome.status, outcome.did_work, job.status, job.deliveries) == ("failed", False, "failed", 5)
    assert job.status_reason == "poison: 5 deliveries lost"
    assert seam_model.seen == []


def test_a_job_redelivered_after_a_lost_delivery_completes_once(seam_model, alice_record, patient_user):
    job = diagnostic_job_request(requester=patient_user, patient=alice_record, model_id=SPEC.id)
    delivery._delivery_begin(str(job.id))  # the first delivery's worker was killed mid-run
    assert diagnostic_job_execute(job_id=str(job.id)).status == "succeeded"
    job.refresh_from_db()
    assert (job.deliveries, JobResult.objects.filter(job=job).count()) == (2, 1)


def test_a_model_error_fails_the_job_and_names_the_place_not_the_data(seam_model, alice_record, patient_user, caplog):
    seam_model.raise_error = ValueError("creatinine 1.37 mg/dL out of range")
    job = diagnostic_job_request(requester=patient_user, patient=alice_record, model_id=SPEC.id)

    assert diagnostic_job_run.apply(args=[str(job.id)]).get() == "failed"

    job.refresh_from_db()
    assert job.status_reason.startswith("error: ValueError at jobs_support.py:")
    assert "1.37" not in job.status_reason
    assert "1.37" not in caplog.text
    assert not JobResult.objects.filter(job=job).exists()


def test_a_job_requested_against_one_model_version_does_not_run_another(seam_model, alice_record, patient_user):
    job = diagnostic_job_request(requester=patient_user, patient=alice_record, model_id=SPEC.id)
    DiagnosticJob.objects.filter(pk=job.pk).update(model_version_hash="sha256:" + "00" * 32)
    assert diagnostic_job_execute(job_id=str(job.id)).status == "failed"
    assert seam_model.seen == []


def test_a_soft_time_limit_ends_the_job_failed(seam_model, alice_record, patient_user):
    from celery.exceptions import SoftTimeLimitExceeded

    seam_model.raise_error = SoftTimeLimitExceeded()
    job = diagnostic_job_request(requester=patient_user, patient=alice_record, model_id=SPEC.id)
    assert diagnostic_job_run.apply(args=[str(job.id)]).get() == "failed"
    job.refresh_from_db()
    assert job.status_reason == "time limit exceeded"


def test_a_job_of_an_erased_record_fails_without_reading(seam_model, alice_record, patient_user):
    from records.services import patient_erase

    job = diagnostic_job_request(requester=patient_user, patient=alice_record, model_id=SPEC.id)
    patient_erase(patient=alice_record, actor="user:test")
    assert diagnostic_job_execute(job_id=str(job.id)).status == "failed"
    job.refresh_from_db()
    assert job.status_reason == "record erased"
    assert seam_model.seen == []
