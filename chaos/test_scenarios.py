"""The chaos scenarios: each breaks a real process the way the issue describes and records what survived."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AccessLogCheckpoint, AccessLogEntry, AccessLogSealState
from audit.witness import access_log_witness
from chaos.conftest import SHORT
from diagnostics.dispatch import job_dispatch_pending
from diagnostics.models import DiagnosticJob, JobDispatch, JobResult
from healthledger.errors import IntegrityFailure
from ledger.client import chain_client
from ledger.devnode import anvil_running
from ledger.services import deployment_create
from records.models import Resource
from tests.audit.anchor_support import seal
from tests.integration.conftest import require_services
from tests.integration.test_job_dispatch_worker import _accept, _own_record
from tests.ledger.test_outbox_anvil import node_settings  # noqa: F401 - the fixture
from tests.ledger.test_outbox_anvil_rollback import _relay_until_confirmed
from tests.patient_device import grant_issue_signed

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JOBS = 4 if SHORT else 20
GRANTS = 2 if SHORT else 6


def _jobs_outcome(ids: list[str], patient) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """lost: accepted jobs without exactly one released result; duplicated: results beyond one per job;
    unlogged_reads: inputs a result names that its job's log entries do not."""
    from audit.models import AccessLogEntry as Entry

    results = {str(r.job_id): r for r in JobResult.objects.filter(job_id__in=ids)}
    releases = Counter(
        Entry.objects.filter(action="diagnostics.result.release", job_id__in=ids).values_list("job_id", flat=True)
    )
    stored = Resource.objects.filter(patient=patient, resource_type="RiskAssessment").count()
    logged: dict[str, set[str]] = {}
    for entry in Entry.objects.filter(job_id__in=ids, action__in=["records.read", "records.search"]):
        logged.setdefault(entry.job_id, set()).update(entry.resource_ids)
    unlogged = sum(len(set(r.input_refs) - logged.get(job_id, set())) for job_id, r in results.items())
    return {
        "lost": len(ids) - len(results),
        "duplicated": max(0, stored - len(results)) + sum(n - 1 for n in releases.values() if n > 1),
        "unlogged_reads": unlogged,
    }


def _canary_record():  # type: ignore[no-untyped-def]
    """A patient whose name is a canary: it is decrypted by every job (the model reads the Patient) and must
    never show up in Redis, the worker's log or the job rows."""
    import secrets

    import orjson

    from accounts.services import user_create
    from records.demo import generate_patient_bundle
    from records.services import fhir_ingest, patient_create

    canary = "Canary" + secrets.token_hex(6)
    alice = user_create(username=f"alice-{canary.lower()}", password=None, role="patient")
    patient = patient_create(user=alice)
    bundle = generate_patient_bundle(3, years=1)
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["name"] = [{"use": "official", "family": canary, "given": [canary]}]
    fhir_ingest(payload=orjson.dumps(bundle), actor="system:chaos", patient=patient)
    patient.refresh_from_db()
    return alice, patient, canary.encode()


def _canary_hits(canary: bytes, redis_url: str, worker_log) -> int:  # type: ignore[no-untyped-def]
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    hits = 0
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        if kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"hash":
            values = list(client.hgetall(key).values())
        elif kind == b"string":
            values = [client.get(key) or b""]
        elif kind in (b"set", b"zset"):
            values = list(client.smembers(key) if kind == b"set" else client.zrange(key, 0, -1))
        else:
            values = []
        hits += sum(canary in (value or b"") for value in [key, *values])
    hits += worker_log.read_bytes().count(canary) if worker_log.exists() else 0
    rows = DiagnosticJob.objects.values_list("status_reason", flat=True)
    hits += sum(canary.decode() in reason for reason in rows)
    return hits


def _wait_done(ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if DiagnosticJob.objects.filter(pk__in=ids, finished_at__isnull=False).count() == len(ids):
            return
        time.sleep(0.2)


def test_redis_stopped_while_jobs_are_accepted(worker, own_redis, record):  # type: ignore[no-untyped-def]
    worker.start()
    alice, patient, canary = _canary_record()
    own_redis.kill()
    ids = _accept(alice, patient, JOBS)  # every one answered: committed with its dispatch row
    own_redis.start()  # back, empty
    started = time.monotonic()
    JobDispatch.objects.filter(job_id__in=ids).update(next_attempt_at=timezone.now())
    job_dispatch_pending()  # beat's next tick
    _wait_done(ids, 120)
    outcome = _jobs_outcome(ids, patient)
    canaries = _canary_hits(canary, own_redis.url, worker.log)
    record(
        scenario="redis stopped during $diagnose",
        faults=f"redis SIGKILL, restarted empty; canary hits {canaries}",
        accepted=len(ids),
        recovery_s=round(time.monotonic() - started, 1),
        **outcome,
    )
    assert outcome == {"lost": 0, "duplicated": 0, "unlogged_reads": 0}
    assert canaries == 0


def test_redis_restarted_without_its_messages(worker, own_redis, record, settings):  # type: ignore[no-untyped-def]
    alice, patient = _own_record()
    ids = _accept(alice, patient, JOBS)  # published; no worker yet
    own_redis.kill()
    own_redis.start()  # no persistence: the queue is gone
    worker.start()
    settings.JOB_REDISPATCH_SECONDS = 1
    time.sleep(1.2)
    started = time.monotonic()
    job_dispatch_pending()  # the sweeper finds no message for them
    _wait_done(ids, 120)
    outcome = _jobs_outcome(ids, patient)
    record(
        scenario="redis lost its queue",
        faults="redis SIGKILL without AOF, restarted empty",
        accepted=len(ids),
        recovery_s=round(time.monotonic() - started, 1),
        **outcome,
    )
    assert outcome == {"lost": 0, "duplicated": 0, "unlogged_reads": 0}


def _grants(count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Alice (her key created on her device, as in the browser) grants Carol read access `count` times."""
    from accounts.services import user_create

    alice, patient = _own_record()
    carol = user_create(username="carol-chaos", password=None, role="clinician")
    now = timezone.now()
    return [
        grant_issue_signed(
            patient=patient,
            by=alice,
            grantee=carol,
            resource_types=["Observation"],
            actions=["read"],
            purpose="TREAT",
            not_before=now - timedelta(minutes=1),
            not_after=now + timedelta(days=1, minutes=n),
        ).id
        for n in range(count)
    ]


def test_anvil_rolled_back_after_confirming_grants(db, node_settings, record):  # type: ignore[no-untyped-def]  # noqa: F811
    from consent.models import Grant, GrantStatus

    require_services()
    port, state = node_settings
    with anvil_running(port=port, state=state):
        deployment = deployment_create()
    before = state.with_name("before.json")
    shutil.copy(state, before)
    with anvil_running(port=port, state=state):
        refs = _grants(GRANTS)  # patient-signed grants, through the outbox, confirmed on chain
        _relay_until_confirmed()
        assert Grant.objects.filter(pk__in=refs, status=GrantStatus.RECORDED).count() == len(refs)
    shutil.copy(before, state)  # the node comes back without the grants' blocks
    with anvil_running(port=port, state=state):
        started = time.monotonic()
        _relay_until_confirmed(passes=30)
        recovery = time.monotonic() - started
        recorded = Counter(
            "0x" + e.grant_id.hex()
            for e in chain_client().grant_events(from_block=deployment.block)
            if e.kind == "recorded"
        )
        confirmed = Grant.objects.filter(pk__in=refs, status=GrantStatus.RECORDED).count()
        lost = sum(1 for ref in refs if recorded[ref] == 0) + (len(refs) - confirmed)
        duplicated = sum(n - 1 for n in recorded.values() if n > 1)
        record(
            scenario="chain forgot confirmed blocks",
            faults="anvil stopped, state file rolled back past patient-signed grants",
            accepted=len(refs),
            lost=lost,
            duplicated=duplicated,
            unlogged_reads=0,
            recovery_s=round(recovery, 1),
        )
    assert (lost, duplicated) == (0, 0)


def test_sealed_tail_truncated_is_caught_by_the_witness(tmp_path, anvil, record):  # type: ignore[no-untyped-def]
    state = tmp_path / "witness.json"
    entries = seal(16 if SHORT else 64, per_checkpoint=8)
    access_log_witness(path=state)
    last = AccessLogCheckpoint.objects.order_by("-last_seq").first()
    removed = AccessLogEntry.objects.filter(seq__gte=last.first_seq).count()
    AccessLogEntry.objects.filter(seq__gte=last.first_seq).delete()
    last.delete()
    AccessLogSealState.objects.filter(pk=1).update(next_seq=last.first_seq)
    started = time.monotonic()
    try:
        access_log_witness(path=state)
        caught = False
    except IntegrityFailure:
        caught = True
    record(
        tampered=True,
        scenario="sealed log tail truncated",
        faults="entries, checkpoint and seal state rewound",
        accepted=len(entries),
        lost=0 if caught else removed,
        duplicated=0,
        unlogged_reads=0,
        recovery_s=round(time.monotonic() - started, 1),
    )
    assert caught


def test_redis_paused_while_diagnose_is_called(worker, own_redis, record):  # type: ignore[no-untyped-def]
    import os
    import secrets
    import signal

    from django.test import Client
    from oauth2_provider.models import AccessToken

    worker.start()
    alice, patient = _own_record()
    token = secrets.token_urlsafe(32)
    AccessToken.objects.create(
        user=alice, token=token, expires=timezone.now() + timedelta(hours=1), scope="user/*.cruds"
    )
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = f"/fhir/Patient/{patient.fhir_id}/$diagnose?model=egfr-ckd-epi-2021&as-of=2025-06-30"
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)  # accepts connections, never answers
    slowest = 0.0
    ids = []
    try:
        for n in range(JOBS):
            started = time.monotonic()
            answer = client.post(url, headers={"Idempotency-Key": f"paused-{n}"})
            slowest = max(slowest, time.monotonic() - started)
            assert answer.status_code == 202
            ids.append(answer["Location"].rsplit("/", 1)[1])
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    started = time.monotonic()
    JobDispatch.objects.filter(job_id__in=ids).update(next_attempt_at=timezone.now())
    job_dispatch_pending()
    _wait_done(ids, 120)
    outcome = _jobs_outcome(ids, patient)
    record(
        scenario="redis paused during $diagnose",
        faults=f"redis SIGSTOP; slowest $diagnose {slowest:.2f} s",
        accepted=len(ids),
        recovery_s=round(time.monotonic() - started, 1),
        **outcome,
    )
    assert outcome == {"lost": 0, "duplicated": 0, "unlogged_reads": 0}
    assert slowest < 3  # one bounded publish at most, then the breaker


def test_worker_killed_with_sigkill_mid_run(worker, own_redis, record, settings):  # type: ignore[no-untyped-def]
    import os
    import signal

    import psutil

    # Redis hands an unacknowledged message out again after the visibility timeout: short, for this worker.
    worker.env["CELERY_VISIBILITY_TIMEOUT"] = "10"
    worker.env["CELERY_TASK_SOFT_TIME_LIMIT"] = "6"
    worker.env["CELERY_TASK_TIME_LIMIT"] = "8"
    worker.start()
    alice, patient, canary = _canary_record()
    ids = _accept(alice, patient, JOBS)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not DiagnosticJob.objects.filter(pk__in=ids, status="running").exists():
        time.sleep(0.02)
    assert worker.process is not None
    main = psutil.Process(worker.process.pid)
    for process in [*main.children(recursive=True), main]:  # the whole worker, pool and all, at once
        os.kill(process.pid, signal.SIGKILL)
    worker.process.wait(10)
    worker.process = None
    started = time.monotonic()
    worker.start()
    settings.JOB_REDISPATCH_SECONDS = 5
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 10}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and DiagnosticJob.objects.filter(pk__in=ids, finished_at__isnull=True).exists():
        job_dispatch_pending()  # beat's tick: the sweeper finds what the dead worker held
        time.sleep(2)
    outcome = _jobs_outcome(ids, patient)
    canaries = _canary_hits(canary, own_redis.url, worker.log)
    record(
        scenario="worker killed mid-run",
        faults=f"celery worker and its pool SIGKILL, started again; canary hits {canaries}",
        accepted=len(ids),
        recovery_s=round(time.monotonic() - started, 1),
        **outcome,
    )
    assert outcome == {"lost": 0, "duplicated": 0, "unlogged_reads": 0}
    assert canaries == 0
