"""Job dispatch: an accepted job is in the database with its dispatch row, whatever the broker does.

Against real Redis processes: the shared one (on a queue of this test's own), a closed port, and a
redis-server of the test's own that is paused with SIGSTOP.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import orjson
import pytest
import redis
from django.test import Client
from django.utils import timezone

from audit.models import AccessLogEntry
from diagnostics import dispatch
from diagnostics.dispatch import broker_job_ids, job_dispatch_pending, job_dispatch_status
from diagnostics.models import DiagnosticJob, JobDispatch
from healthledger.celery import app as celery_app
from tests.diagnostics.jobs_support import *  # noqa: F403
from tests.diagnostics.jobs_support import SPEC

pytestmark = pytest.mark.django_db

SHARED_REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _client(user) -> Client:  # type: ignore[no-untyped-def]
    from oauth2_provider.models import AccessToken

    token = secrets.token_urlsafe(32)
    AccessToken.objects.create(
        user=user, token=token, expires=timezone.now() + timedelta(hours=1), scope="user/*.cruds"
    )
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _diagnose(client: Client, patient_fhir_id: str, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(f"/fhir/Patient/{patient_fhir_id}/$diagnose?model={SPEC.id}", headers=headers)


@pytest.fixture
def broker(settings) -> Iterator[callable]:  # type: ignore[valid-type]
    """Point the app's broker somewhere; messages go to a queue of this test's own, deleted afterwards."""
    queue = f"dispatch-test-{os.getpid()}-{secrets.token_hex(4)}"
    before = (celery_app.conf.broker_url, celery_app.conf.task_default_queue, celery_app.conf.task_always_eager)
    celery_app.conf.task_default_queue = queue
    celery_app.conf.task_always_eager = False
    dispatch._breaker_reset()

    def point(url: str) -> str:
        settings.CELERY_BROKER_URL = url
        celery_app.conf.broker_url = url
        return queue

    point(SHARED_REDIS)
    yield point
    celery_app.conf.broker_url, celery_app.conf.task_default_queue, celery_app.conf.task_always_eager = before
    dispatch._breaker_reset()
    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(SHARED_REDIS, socket_timeout=1).delete(queue)


@pytest.fixture
def shared_redis() -> redis.Redis:
    client = redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"needs Redis at {SHARED_REDIS}")
    return client


@pytest.fixture
def granted(run_model_grant, alice_record, clinician):  # type: ignore[no-untyped-def]
    run_model_grant()
    alice_record.refresh_from_db()
    return _client(clinician)


# Only a hang fails on time: the request's speed is the bench's to measure, not a test's on a shared machine.
HANG_SECONDS = 20


@pytest.fixture
def connects(monkeypatch) -> Callable[[int], int]:
    """How many TCP connections this process tried to open to a port (redis-py connects through socket.connect)."""
    tried: list[int] = []
    connect = socket.socket.connect

    def counted(sock, address):  # type: ignore[no-untyped-def]
        if isinstance(address, tuple):
            tried.append(int(address[1]))
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counted)
    return lambda port: tried.count(port)


@pytest.fixture
def publishes(monkeypatch) -> list[float]:
    """The publish attempts made while accepting requests, each with how long it took."""
    taken: list[float] = []
    within = dispatch._publish_within

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.monotonic()
        try:
            return within(*args, **kwargs)
        finally:
            taken.append(time.monotonic() - started)

    monkeypatch.setattr(dispatch, "_publish_within", timed)
    return taken


def test_diagnose_with_the_broker_unreachable_answers_202_at_once_and_the_job_is_owed_to_the_dispatcher(
    broker, granted, alice_record, seam_model, django_capture_on_commit_callbacks, connects, publishes
):
    port = _free_port()
    broker(f"redis://127.0.0.1:{port}/0")  # a closed port: connection refused
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        answer = _diagnose(granted, alice_record.fhir_id)
    elapsed = time.monotonic() - started

    assert answer.status_code == 202
    job = DiagnosticJob.objects.get()
    row = JobDispatch.objects.get(job=job)
    assert (job.status, row.published_at, row.publishes, row.attempts) == ("queued", None, 0, 1)
    # Refused, not timed out: the request did not wait out the publish timeout on a port that answers no.
    assert row.last_error.startswith("ConnectionError") or row.last_error.startswith("OperationalError")
    # One publish attempt, and it did not retry its connection: no reconnect loop inside the request.
    assert len(publishes) == 1
    assert 1 <= connects(port) <= dispatch.REDIS_TRIES
    assert elapsed < HANG_SECONDS
    assert job_dispatch_status()["undispatched"] == 1


def test_after_one_failed_publish_the_next_requests_do_not_wait_on_the_broker(
    broker, granted, alice_record, seam_model, django_capture_on_commit_callbacks
):
    broker(f"redis://127.0.0.1:{_free_port()}/0")
    with django_capture_on_commit_callbacks(execute=True):
        _diagnose(granted, alice_record.fhir_id)
    with django_capture_on_commit_callbacks(execute=True):
        assert _diagnose(granted, alice_record.fhir_id).status_code == 202

    rows = JobDispatch.objects.order_by("job__created_at")
    # The second was not tried at all (the breaker is open): it is due for the dispatcher right away.
    assert [(r.published_at, r.attempts) for r in rows] == [(None, 1), (None, 0)]
    assert rows[1].next_attempt_at <= timezone.now()


def test_the_dispatcher_publishes_owed_jobs_once_the_broker_is_back(
    broker, shared_redis, granted, alice_record, seam_model, django_capture_on_commit_callbacks
):
    broker(f"redis://127.0.0.1:{_free_port()}/0")
    with django_capture_on_commit_callbacks(execute=True):
        _diagnose(granted, alice_record.fhir_id)
    job = DiagnosticJob.objects.get()
    JobDispatch.objects.update(next_attempt_at=timezone.now())  # its backoff has passed
    queue = broker(SHARED_REDIS)

    report = job_dispatch_pending()

    assert (report.published, report.failed) == (1, 0)
    row = JobDispatch.objects.get(job=job)
    assert (row.publishes, row.attempts) == (1, 0)
    assert row.published_at is not None
    assert shared_redis.llen(queue) == 1
    assert str(job.id) in broker_job_ids()


def test_the_sweeper_redispatches_an_open_job_whose_broker_message_was_lost(
    broker, shared_redis, granted, alice_record, seam_model, django_capture_on_commit_callbacks, settings
):
    queue = broker(SHARED_REDIS)
    with django_capture_on_commit_callbacks(execute=True):
        _diagnose(granted, alice_record.fhir_id)
    job = DiagnosticJob.objects.get()
    assert shared_redis.llen(queue) == 1
    shared_redis.delete(queue)  # the broker restarted without its data
    past = timezone.now() - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS + 1)
    JobDispatch.objects.update(published_at=past)
    DiagnosticJob.objects.filter(pk=job.pk).update(updated_at=past)

    report = job_dispatch_pending()

    assert (report.swept, report.redispatched) == (True, 1)
    assert JobDispatch.objects.get(job=job).publishes == 2
    assert shared_redis.llen(queue) == 1
    assert str(job.id) in broker_job_ids()


def test_the_sweeper_leaves_a_job_whose_message_is_still_queued_alone(
    broker, shared_redis, granted, alice_record, seam_model, django_capture_on_commit_callbacks, settings
):
    queue = broker(SHARED_REDIS)
    with django_capture_on_commit_callbacks(execute=True):
        _diagnose(granted, alice_record.fhir_id)
    past = timezone.now() - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS + 1)
    JobDispatch.objects.update(published_at=past)
    DiagnosticJob.objects.update(updated_at=past)

    report = job_dispatch_pending()

    assert (report.swept, report.redispatched) == (True, 0)
    assert JobDispatch.objects.get().publishes == 1
    assert shared_redis.llen(queue) == 1


def test_a_finished_job_is_never_redispatched(
    broker, shared_redis, granted, alice_record, seam_model, django_capture_on_commit_callbacks, settings
):
    queue = broker(SHARED_REDIS)
    with django_capture_on_commit_callbacks(execute=True):
        _diagnose(granted, alice_record.fhir_id)
    from diagnostics.services import diagnostic_job_execute

    job = DiagnosticJob.objects.get()
    assert diagnostic_job_execute(job_id=str(job.id)).status == "succeeded"
    shared_redis.delete(queue)
    past = timezone.now() - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS + 1)
    JobDispatch.objects.update(published_at=past)
    DiagnosticJob.objects.update(updated_at=past)

    assert job_dispatch_pending().redispatched == 0
    assert shared_redis.llen(queue) == 0


@pytest.fixture
def paused_redis() -> Iterator[str]:
    """A redis-server of this test's own, stopped with SIGSTOP: it accepts connections and never answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs redis-server on PATH")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        for _ in range(50):
            try:
                client.ping()
                break
            except redis.RedisError:
                time.sleep(0.1)
        os.kill(process.pid, signal.SIGSTOP)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        process.wait(10)


def test_diagnose_with_the_broker_paused_waits_one_bounded_publish_then_none(
    broker, paused_redis, granted, alice_record, seam_model, django_capture_on_commit_callbacks, publishes
):
    broker(paused_redis)
    timings = []
    for _ in range(3):
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            assert _diagnose(granted, alice_record.fhir_id).status_code == 202
        timings.append(time.monotonic() - started)

    # One bounded publish attempt (a timeout, not a hang), then the breaker: no second attempt, so no second wait.
    assert len(publishes) == 1
    rows = JobDispatch.objects.order_by("job__created_at")
    assert [r.attempts for r in rows] == [1, 0, 0]
    assert rows[0].last_error in ("Timeout", "TimeoutError", "OperationalError")
    assert max(timings) < HANG_SECONDS
    assert JobDispatch.objects.filter(published_at__isnull=True).count() == 3


def test_a_retry_with_the_same_idempotency_key_returns_the_same_job(
    broker, granted, alice_record, seam_model, django_capture_on_commit_callbacks
):
    broker(f"redis://127.0.0.1:{_free_port()}/0")
    with django_capture_on_commit_callbacks(execute=True):
        first = _diagnose(granted, alice_record.fhir_id, **{"Idempotency-Key": "order-4711"})
    with django_capture_on_commit_callbacks(execute=True):
        again = _diagnose(granted, alice_record.fhir_id, **{"Idempotency-Key": "order-4711"})

    assert (first.status_code, again.status_code) == (202, 202)
    assert orjson.loads(first.content)["id"] == orjson.loads(again.content)["id"]
    assert DiagnosticJob.objects.count() == JobDispatch.objects.count() == 1
    assert AccessLogEntry.objects.filter(action="diagnostics.job.request").count() == 1


def test_the_same_idempotency_key_for_another_request_is_refused(
    broker, granted, alice_record, seam_model, django_capture_on_commit_callbacks
):
    broker(f"redis://127.0.0.1:{_free_port()}/0")
    with django_capture_on_commit_callbacks(execute=True):
        _diagnose(granted, alice_record.fhir_id, **{"Idempotency-Key": "order-4711"})
    other = granted.post(
        f"/fhir/Patient/{alice_record.fhir_id}/$diagnose?model={SPEC.id}&as-of=2024-01-01",
        headers={"Idempotency-Key": "order-4711"},
    )

    assert other.status_code == 422
    assert orjson.loads(other.content)["resourceType"] == "OperationOutcome"
    assert DiagnosticJob.objects.count() == 1


def test_an_idempotency_key_belongs_to_its_requester(
    broker, granted, alice_record, patient_user, seam_model, django_capture_on_commit_callbacks
):
    broker(f"redis://127.0.0.1:{_free_port()}/0")
    with django_capture_on_commit_callbacks(execute=True):
        carols = _diagnose(granted, alice_record.fhir_id, **{"Idempotency-Key": "k1"})
        alices = _client(patient_user).post(
            f"/fhir/Patient/{alice_record.fhir_id}/$diagnose?model={SPEC.id}", headers={"Idempotency-Key": "k1"}
        )

    assert (carols.status_code, alices.status_code) == (202, 202)
    assert orjson.loads(carols.content)["id"] != orjson.loads(alices.content)["id"]


def test_a_malformed_idempotency_key_is_a_400(broker, granted, alice_record, seam_model):
    answer = _diagnose(granted, alice_record.fhir_id, **{"Idempotency-Key": "x" * 129})

    assert answer.status_code == 400
    assert "Idempotency-Key" in orjson.loads(answer.content)["issue"][0]["diagnostics"]
    assert DiagnosticJob.objects.count() == 0


def test_a_clinician_without_a_grant_cannot_use_a_key_to_see_anothers_job(
    broker, granted, alice_record, other_clinician, seam_model, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _diagnose(granted, alice_record.fhir_id, **{"Idempotency-Key": "k2"})
    stranger = _diagnose(_client(other_clinician), alice_record.fhir_id, **{"Idempotency-Key": "k2"})

    assert stranger.status_code == 404
    assert DiagnosticJob.objects.count() == 1


def test_diagnose_answers_503_with_retry_after_when_the_database_cannot_accept_the_job(
    broker, granted, alice_record, seam_model, monkeypatch
):
    from django.db import OperationalError

    def refuse(**kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("database is locked")

    monkeypatch.setattr(DiagnosticJob.objects, "create", refuse)
    answer = _diagnose(granted, alice_record.fhir_id)

    assert answer.status_code == 503
    assert answer["Retry-After"].isdigit()
    assert DiagnosticJob.objects.count() == JobDispatch.objects.count() == 0


@pytest.mark.parametrize(("delivered_ago", "redispatched"), [(5, 0), (400, 1)])
def test_a_delivered_message_counts_as_live_only_within_the_visibility_timeout(
    broker,
    shared_redis,
    granted,
    alice_record,
    seam_model,
    django_capture_on_commit_callbacks,
    settings,
    delivered_ago,
    redispatched,
):
    import json

    queue = broker(SHARED_REDIS.rsplit("/", 1)[0] + "/13")  # a database of its own: no other worker restores it
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("unacked", "unacked_index")
    with django_capture_on_commit_callbacks(execute=True):
        _diagnose(granted, alice_record.fhir_id)
    # A worker took the message (kombu moves it to the unacked hash) and was never heard of again.
    raw = client.rpop(queue)
    client.hset("unacked", "tag-1", json.dumps([json.loads(raw), "", queue]))
    client.zadd("unacked_index", {"tag-1": time.time() - delivered_ago})
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 300}
    past = timezone.now() - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS + 1)
    JobDispatch.objects.update(published_at=past)
    DiagnosticJob.objects.update(updated_at=past)
    try:
        report = job_dispatch_pending()
    finally:
        client.delete("unacked", "unacked_index", queue)

    assert report.redispatched == redispatched
    assert JobDispatch.objects.get().publishes == 1 + redispatched
