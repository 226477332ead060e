"""Policy decision latency in process, against a bare indexed fetch of the same grant row.

Both variants run interleaved in one loop, so the machine's noise hits them alike.
The grant is a recorded mirror row (no chain call happens on the request path).
"""

from __future__ import annotations

import secrets
import statistics
import time
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from bench.harness import Figure

ROUNDS = 20_000


def _setup():  # type: ignore[no-untyped-def]
    from accounts.services import user_create
    from consent.models import Grant, GrantStatus
    from records.services import patient_create

    owner = user_create(username=f"bench-patient-{secrets.token_hex(4)}", password=None, role="patient")
    clinician = user_create(username=f"bench-clinician-{secrets.token_hex(4)}", password=None, role="clinician")
    patient = patient_create(user=owner)
    now = timezone.now()
    grant = Grant.objects.create(
        id="0x" + secrets.token_hex(32),
        patient=patient,
        grantee=clinician,
        resource_types=["Observation", "Condition"],
        actions=["read"],
        purpose="TREAT",
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=30),
        patient_address="0x" + "11" * 20,
        grantee_address="0x" + "22" * 20,
        salt="0x" + "33" * 32,
        commitment_salt="0x" + "44" * 32,
        scope_commitment="0x" + "55" * 32,
        signature="0x" + "66" * 65,
        status=GrantStatus.RECORDED,
    )
    return patient, clinician, grant


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run() -> list[Figure]:
    from consent.models import Grant
    from consent.pdp import decide

    patient, clinician, grant = _setup()
    table = connection.ops.quote_name(Grant._meta.db_table)
    bare_sql = f"SELECT id FROM {table} WHERE id = %s"

    def decision() -> None:
        result = decide(
            actor=clinician,
            patient_id=patient.pk,
            patient_user_id=patient.user_id,
            action="read",
            resource_types=["Observation"],
            purpose="TREAT",
        )
        assert result.permit

    def bare() -> None:
        with connection.cursor() as cursor:
            cursor.execute(bare_sql, [grant.pk])
            assert cursor.fetchone() is not None

    for _ in range(500):  # warm caches and the connection
        decision()
        bare()
    decided: list[float] = []
    fetched: list[float] = []
    clock = time.perf_counter
    for _ in range(ROUNDS):
        started = clock()
        decision()
        decided.append(clock() - started)
        started = clock()
        bare()
        fetched.append(clock() - started)
    p50, p99 = _percentile(decided, 0.50) * 1e6, _percentile(decided, 0.99) * 1e6
    b50, b99 = _percentile(fetched, 0.50) * 1e6, _percentile(fetched, 0.99) * 1e6
    return [
        Figure("decision latency p50", p50, "us", "<= 50", p50 <= 50),
        Figure("decision latency p99", p99, "us"),
        Figure("bare grant row fetch p50", b50, "us"),
        Figure("bare grant row fetch p99", b99, "us"),
        Figure("decision ratio p50 vs bare fetch", p50 / b50, "x time"),
        Figure("decision mean", statistics.fmean(decided) * 1e6, "us"),
    ]
