"""Two web nodes behind haproxy and two Celery worker nodes, on one PostgreSQL and one Redis.

Under load (clients asking for `$diagnose` with Idempotency-Keys, retrying what got no answer; a clinician's
N readers; the patient issuing and revoking the clinician's grant at random), one web node and one worker
node are killed with SIGKILL. Afterwards:
- every job accepted is done exactly once, none lost, none doubled (the shared check, chaos/checks.py);
- no read was served that the grants at that moment did not allow: each 200 must overlap the life of a
  grant (from the start of its issue to the end of its revocation), checked against the grant history;
- the access log holds one permit entry per read served (a read whose answer was lost with its node may
  hold an entry the client never saw: counted, bounded by the reads without an answer);
- the canary (the patient's name) is in no log, Redis key or value, answer body, job row or chain data.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.utils import timezone

from audit.models import AccessLogEntry
from chaos import checks
from chaos.cluster import LoadBalancer, Traffic, WebNode, kill_tree, web_env
from chaos.conftest import SHORT
from chaos.test_faults import bearer_session, diagnose_path, jobs_outcome, observation_path, run_jobs_to_the_end
from consent.models import Grant
from ledger.outbox import outbox_relay
from tests.integration.test_job_dispatch_worker import Worker
from tests.patient_device import grant_issue_signed, grant_revoke_signed

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

READERS = 8 if SHORT else 50
SECONDS = 6 if SHORT else 120
POSTERS = 2
POST_PAUSE = 0.3 if SHORT else 1.0  # between one client's jobs: what the two workers keep up with


def _churn(alice, patient, carol, stop: threading.Event, lives: list[list[float]]) -> None:  # type: ignore[no-untyped-def]
    """The patient grants and revokes at random; each grant's life is [issue started, revocation ended]."""
    rng = random.Random(13)  # noqa: S311 - timing, not secrets
    while not stop.is_set():
        life = [time.monotonic(), float("inf")]
        lives.append(life)
        now = timezone.now()
        grant = grant_issue_signed(
            patient=patient,
            by=alice,
            grantee=carol,
            resource_types=["Observation"],
            actions=["read"],
            purpose="TREAT",
            not_before=now - timedelta(minutes=1),
            not_after=now + timedelta(hours=1),
        )
        for _ in range(20):  # relayed and confirmed: only a recorded grant allows reads
            outbox_relay()
            if Grant.objects.filter(pk=grant.pk, status="recorded").exists():
                break
            time.sleep(0.05)
        stop.wait(rng.uniform(0.2, 1.0))
        grant_revoke_signed(grant=Grant.objects.get(pk=grant.pk), by=alice)
        life[1] = time.monotonic()
        outbox_relay()
        stop.wait(rng.uniform(0.2, 1.0))
    connection.close()


def test_two_web_nodes_two_workers_one_of_each_killed(  # type: ignore[no-untyped-def]
    worker, own_redis, anvil, token_for, settings, tmp_path, record
):
    from accounts.services import user_create
    from chaos.test_scenarios import _canary_record

    # Redis hands a dead worker's unacknowledged messages out again after the visibility timeout: short here,
    # and the sweeper (run from this process) counts a delivered message as live only that long.
    worker.env["CELERY_VISIBILITY_TIMEOUT"] = "10"
    settings.JOB_REDISPATCH_SECONDS = 5
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 10}
    second = Worker(dict(worker.env), tmp_path / "worker2.log")
    nodes = [WebNode(f"web{n}", web_env(worker.env), tmp_path / f"web{n}.log") for n in (1, 2)]
    balancer = LoadBalancer(nodes, tmp_path)
    try:
        for node in nodes:
            node.start(wait=False)
        starting = threading.Thread(target=second.start)  # the two workers boot side by side
        starting.start()
        worker.start()
        starting.join()
        for node in nodes:
            node.wait_ready()
        balancer.start()
        alice, patient, canary = _canary_record()
        carol = user_create(username="carol-cluster", password=None, role="clinician")
        carol_token = token_for(carol, scope="user/Observation.rs", purpose="TREAT")
        alice_session = bearer_session(alice)
        read_path, post_path = observation_path(patient), diagnose_path(patient)
        traffic = Traffic()
        stop = threading.Event()
        lives: list[list[float]] = []
        retried = [0]

        def read() -> None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {carol_token}"
            while not stop.is_set():
                traffic.call(session, "GET", balancer.url, read_path, timeout=10)

        def post(n: int) -> None:
            m = 0
            while not stop.is_set():
                key = f"cluster-{n}-{m}"
                for _ in range(20):  # no answer, or the node died under it: the same key again
                    answer = traffic.call(alice_session, "POST", balancer.url, post_path, key=key, timeout=10)
                    if answer.status == 202:
                        break
                    retried[0] += 1
                    time.sleep(0.2)
                m += 1
                time.sleep(POST_PAUSE)

        threads = [threading.Thread(target=read) for _ in range(READERS)]
        threads += [threading.Thread(target=post, args=(n,)) for n in range(POSTERS)]
        threads.append(threading.Thread(target=_churn, args=(alice, patient, carol, stop, lives)))
        sampled = [0]

        def sample_redis() -> None:  # task arguments and anything else, while the load runs
            while not stop.wait(1):
                sampled[0] += checks.redis_hits(canary, own_redis.url)

        threads.append(threading.Thread(target=sample_redis))
        for thread in threads:
            thread.start()
        time.sleep(SECONDS / 3)
        nodes[0].kill()  # mid-load, with requests in flight
        assert worker.process is not None
        kill_tree(worker.process)
        worker.process = None
        killed_at = time.monotonic()
        time.sleep(SECONDS * 2 / 3)
        stop.set()
        for thread in threads:
            thread.join(60)

        posts = [a for a in traffic.answers if a.method == "POST"]
        ids = sorted({a.location.rsplit("/", 1)[1] for a in posts if a.status == 202})
        keys = {a.key for a in posts}
        started = time.monotonic()  # the load is over: how long until the dead worker's jobs are done
        run_jobs_to_the_end(ids, timeout=180)
        outcome = jobs_outcome(ids)
        outcome["duplicated"] += max(0, len(ids) - len(keys))
        recovery = time.monotonic() - started
        after_kill = [a for a in traffic.answers if a.started > killed_at]
        failed_after = sum(1 for a in after_kill if a.status not in (200, 202, 404))

        reads = [a for a in traffic.answers if a.method == "GET"]
        served = [a for a in reads if a.status == 200]
        unanswered = sum(1 for a in reads if a.status == 0 or a.status >= 500)
        outside = [a for a in served if not any(start <= a.ended and a.started <= end for start, end in lives)]
        entries = AccessLogEntry.objects.filter(
            actor=f"user:{carol.pk}", action="records.read", outcome="permit"
        ).count()
        canaries = (
            sampled[0]
            + checks.redis_hits(canary, own_redis.url)
            + checks.file_hits(canary, [tmp_path])
            + sum(canary in body for body in traffic.bodies())
            + checks.rows_hits(canary)
            + checks.chain_hits(canary, anvil)
        )
        record(
            scenario="two web nodes, two workers: one of each killed",
            faults=(
                f"haproxy; web node and worker node SIGKILL under load; {retried[0]} $diagnose retried with "
                f"the same key, {failed_after} errors after the kill; canary hits {canaries}"
            ),
            accepted=len(ids),
            recovery_s=round(recovery, 1),
            **outcome,
        )
        record(
            scenario=f"{READERS} readers while grants change",
            faults=(
                f"{len(lives)} grants issued and revoked at random over {SECONDS} s; {len(served)} reads served, "
                f"{len(reads) - len(served)} refused or unanswered; {len(outside)} outside any grant; "
                f"{entries} permit entries"
            ),
            accepted=len(served),
            lost=0,
            duplicated=0,
            unlogged_reads=max(0, len(served) - entries),
            recovery_s=0.0,
        )
    finally:  # the scenario is over and checked: nothing to wait for
        balancer.stop()
        for node in nodes:
            node.kill()
        if second.process is not None:
            kill_tree(second.process)
    assert outcome == {"lost": 0, "duplicated": 0, "unlogged_reads": 0}
    assert outside == []
    assert len(served) <= entries <= len(served) + unanswered
    assert lives[0][1] < float("inf")  # at least one grant issued and revoked under the readers
    assert 0 < len(served) < len(reads)  # reads were both allowed and refused
    assert canaries == 0
