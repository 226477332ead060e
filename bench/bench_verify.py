"""Access-log verification throughput, reading the entries from the database.

Appends 200,000 realistic entries, seals them into signed checkpoints, then times
access_log_verify over all of them, in one process and with one worker process per CPU
(the goal's figure), next to a raw fetch of the same rows (same SQL, no hashing), so the
ratio shows what the hashing and comparison cost on top of I/O in one process.
"""

from __future__ import annotations

import os
import random
import uuid

from bench.harness import Figure, timed

ENTRIES = 200_000
GOAL_PER_SECOND = 200_000
_ACTIONS = ["records.read", "records.search", "records.write", "consent.grant.create", "diagnostics.result.release"]
_PURPOSES = ["TREAT", "ETREAT", "HRESCH", "PATRQT"]


def _events(count: int, rng: random.Random) -> list:  # type: ignore[type-arg]
    from audit.services import LogEvent

    patients = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(500)]
    events = []
    for n in range(count):
        deny = n % 17 == 0
        events.append(
            LogEvent(
                actor=f"user:{rng.randrange(1, 5000)}" if n % 5 else f"job:{uuid.UUID(int=rng.getrandbits(128))}",
                action=_ACTIONS[n % len(_ACTIONS)],
                outcome="deny" if deny else "permit",
                patient_ref=patients[n % len(patients)],
                purpose=_PURPOSES[n % len(_PURPOSES)],
                grant_ref="" if deny else f"0x{rng.getrandbits(256):064x}",
                resource_ids=[f"Observation/{uuid.UUID(int=rng.getrandbits(128))}" for _ in range(n % 4)],
                query="code=http://loinc.org|4548-4&date=ge2024-01-01" if n % 7 == 0 else "",
                job_id="",
                reason="unconscious patient in the emergency department" if n % 101 == 0 else "",
                break_glass=n % 101 == 0,
            )
        )
    return events


def _append(count: int) -> None:
    from django.db import transaction

    from audit.services import access_log_append_many

    rng = random.Random(6962)
    batch = 10_000
    for start in range(0, count, batch):
        with transaction.atomic():
            access_log_append_many(events=_events(min(batch, count - start), rng))


def run() -> list[Figure]:
    from django.db import transaction

    from audit.leaves import sealed_rows
    from audit.models import AccessLogCheckpoint
    from audit.services import access_log_seal, access_log_verify

    _append(ENTRIES)
    seal_seconds = timed(access_log_seal)
    ranges = list(AccessLogCheckpoint.objects.order_by("first_seq").values_list("first_seq", "last_seq"))
    sealed = sum(last - first + 1 for first, last in ranges)

    def raw_fetch() -> None:
        with transaction.atomic():
            fetched = sum(len(sealed_rows(first_seq=first, last_seq=last)) for first, last in ranges)
        assert fetched == sealed

    reports = []
    jobs = max(2, os.cpu_count() or 2)

    def verify() -> None:
        reports.append(access_log_verify())

    def verify_parallel() -> None:
        reports.append(access_log_verify(jobs=jobs))

    # Interleave them so all see the same cache state and machine noise.
    raw_seconds = verify_seconds = parallel_seconds = float("inf")
    for _ in range(3):
        raw_seconds = min(raw_seconds, timed(raw_fetch))
        verify_seconds = min(verify_seconds, timed(verify))
        parallel_seconds = min(parallel_seconds, timed(verify_parallel))
    for report in reports:
        if not report.ok or report.entries_checked != sealed:
            raise RuntimeError(f"verification of a clean log failed: {report.problem}")
    per_second = sealed / parallel_seconds
    return [
        Figure("access log entries sealed", float(sealed), "entries"),
        Figure("access log seal entries per second", sealed / seal_seconds, "entries/s"),
        Figure("access log verify entries per second, 1 process", sealed / verify_seconds, "entries/s"),
        Figure(
            f"access log verify entries per second, {jobs} processes",
            per_second,
            "entries/s",
            goal=f">= {GOAL_PER_SECOND:,}",
            met=per_second >= GOAL_PER_SECOND,
        ),
        Figure("access log raw fetch entries per second", sealed / raw_seconds, "entries/s"),
        Figure("access log verify ratio vs raw fetch", verify_seconds / raw_seconds, "x time"),
    ]
