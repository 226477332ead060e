"""One stored resource through the logged read path against the same row's bytes with no crypto and no log.

Gated: consent.gate.resource_read (decide, one joined query, access-log insert,
unwrap + decrypt, commit). Plain: the same joined query (records.selectors) returning
the same row's stored bytes, nothing else. Run in alternating rounds so noise hits both alike;
the ratio is gated throughput over plain throughput.
"""

from __future__ import annotations

import time

from bench.harness import FIXTURES, Figure

ROUNDS = 10
READS_PER_ROUND = 300


def _subject():  # type: ignore[no-untyped-def]
    from accounts.services import user_create
    from records.models import Patient, Resource
    from records.services import fhir_ingest, patient_create

    if not Resource.objects.filter(resource_type="Observation").exists():
        record = patient_create()
        fhir_ingest(payload=sorted(FIXTURES.glob("*.json"))[0].read_bytes(), actor="system:bench", patient=record)
    resource = Resource.objects.filter(resource_type="Observation").order_by("pk").first()
    assert resource is not None
    patient = Patient.objects.get(pk=resource.patient_id)
    if patient.user_id is None:
        patient.user = user_create(username=f"bench-{patient.pk}", password=None, role="patient")
        patient.save(update_fields=["user"])
    return patient.user, patient, resource


def run() -> list[Figure]:
    from consent.gate import Caller, resource_read
    from records.selectors import stored_version_get

    user, patient, resource = _subject()

    def gated() -> bytes:
        return resource_read(
            caller=Caller(actor=user),
            patient=patient,
            resource_type=resource.resource_type,
            resource_id=resource.fhir_id,
        )

    def plain() -> bytes:
        # The very same query the gate runs, serving the row's bytes as they are.
        stored = stored_version_get(patient=patient, resource_type=resource.resource_type, resource_id=resource.fhir_id)
        assert stored is not None
        return stored.ciphertext

    assert gated().startswith(b"{")
    assert plain()
    gated_s = plain_s = 0.0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(READS_PER_ROUND):
            gated()
        gated_s += time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(READS_PER_ROUND):
            plain()
        plain_s += time.perf_counter() - started
    reads = ROUNDS * READS_PER_ROUND
    return [
        Figure("read: gated, logged, decrypted reads per second", reads / gated_s, "reads/s"),
        Figure("read: plain row fetches per second (no crypto, no log)", reads / plain_s, "reads/s"),
        Figure("read: gated vs plain throughput ratio", plain_s / gated_s, "ratio"),
        Figure("read: gated read latency", gated_s / reads * 1000, "ms"),
    ]
