"""The whole consent loop through the real parts: a Celery worker process (with beat), Redis, anvil, PostgreSQL.

The patient grants; the grant's outbox write is queued on commit, delivered through Redis
to the worker, and recorded on anvil. The clinician reads through the gate; the worker's
beat seals the access log and anchors it; the read's inclusion proof verifies against the
root read back from the chain. The patient revokes: the very next read is denied, and
the worker records the revocation on chain. Reconcile then finds no difference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from django.utils import timezone

from accounts.services import user_create
from audit.chain_check import access_log_anchored_proof, access_log_verify_chain
from audit.models import AccessLogEntry
from audit.services import access_log_verify
from consent.gate import Caller, resource_read
from consent.models import Grant, GrantStatus
from consent.reconcile import chain_reconcile
from consent.services import chain_grant
from healthledger.errors import ResourceNotFound
from ledger.client import chain_client
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest, patient_create
from tests.integration.conftest import CELERY, REPO, worker_env
from tests.patient_device import grant_issue_signed, grant_revoke_signed

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _wait(what: str, check: Callable[[], object], log: Path, timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no worker log)"
    raise AssertionError(f"timed out waiting for {what}; worker log tail:\n{tail}")


@pytest.fixture
def worker(anvil, settings, tmp_path) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """`celery worker -B` as its own process, on the test database, the test's keys, anvil and Redis."""
    log = tmp_path / "worker.log"
    env = worker_env(
        settings=settings,
        rpc_url=anvil,
        var_dir=tmp_path,
        AUDIT_CHECKPOINT_SECONDS="1",
        AUDIT_ANCHOR_SECONDS="1",
        OUTBOX_RELAY_SECONDS="1",
    )
    command = [
        str(CELERY), "-A", "healthledger", "worker", "-B", "--pool=prefork", "-c", "2", "-l", "INFO",
        "-s", str(tmp_path / "beat-schedule"), "-n", f"itest-{os.getpid()}@%h",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait("the worker to be ready", lambda: b"ready." in log.read_bytes(), log, timeout=60)
        yield log
    finally:
        process.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("the worker did not stop on SIGTERM within 30 s") from None
        assert code == 0, log.read_text(errors="replace")[-4000:]


def test_grant_read_anchor_revoke_and_reconcile_through_a_real_worker_redis_and_anvil(worker):
    alice = user_create(username="alice-it", password=None, role="patient")
    carol = user_create(username="carol-it", password=None, role="clinician")
    record = patient_create(user=alice)
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(3, years=1)), actor="system:test", patient=record)
    observation = Resource.objects.filter(patient=record, resource_type="Observation").order_by("pk").first()
    now = timezone.now()

    grant = grant_issue_signed(
        patient=record, by=alice, grantee=carol, resource_types=["Observation"], actions=["read"],
        purpose="TREAT", not_before=now - timedelta(minutes=1), not_after=now + timedelta(days=1),
    )  # fmt: skip
    # Delivered to the worker through Redis on commit, sent to anvil, confirmed: the mirror says so.
    recorded_on_chain = lambda: Grant.objects.get(pk=grant.pk).status == GrantStatus.RECORDED  # noqa: E731
    _wait("the grant to be recorded on chain", recorded_on_chain, worker)
    recorded = Grant.objects.get(pk=grant.pk)
    g = chain_grant(recorded)
    assert chain_client().is_active(bytes.fromhex(grant.id[2:]), g.grantee, g.scope_commitment) is True

    caller = Caller(actor=carol, purpose="TREAT")
    body = resource_read(caller=caller, patient=record, resource_type="Observation", resource_id=observation.fhir_id)
    assert orjson.loads(body)["id"] == observation.fhir_id
    read_entry = AccessLogEntry.objects.get(actor=f"user:{carol.pk}", action="records.read", outcome="permit")

    # Beat seals and anchors; the proof's root must be the one read back from the chain.
    def proven() -> bool:
        read_entry.refresh_from_db()
        return access_log_anchored_proof(entry=read_entry).verified

    _wait("the clinician's read to be anchored and verifiable", proven, worker, timeout=90)

    grant_revoke_signed(grant=recorded, by=alice)
    with pytest.raises(ResourceNotFound):
        resource_read(caller=caller, patient=record, resource_type="Observation", resource_id=observation.fhir_id)
    _wait("the revocation to be recorded on chain", lambda: Grant.objects.get(pk=grant.pk).revocation_tx_hash, worker)
    assert chain_client().is_active(bytes.fromhex(grant.id[2:]), g.grantee, g.scope_commitment) is False

    assert access_log_verify().ok
    assert access_log_verify_chain().ok
    report = chain_reconcile(dry_run=True)
    assert list(report.remaining) == []
