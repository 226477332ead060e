"""Ingest of the 40 Synthea bundles against a validate-only loop over the same documents.

Both variants run bundle by bundle, interleaved, so machine noise hits them alike:
for each bundle, parse_document (validation only) is timed, then fhir_ingest
(validate, rewrite, encrypt, index, version, log, commit) on a store that has not
seen it. A second pass re-ingests everything unchanged (keyed-hash comparison, no
new versions). Goal: ingest throughput at least 0.6 of validate-only.
"""

from __future__ import annotations

import gc
import time

from bench.harness import FIXTURES, Figure

GOAL_RATIO = 0.6


def _seconds(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run() -> list[Figure]:
    import logging

    import orjson

    from records.fhir import parse_document
    from records.services import fhir_ingest, patient_create

    logging.getLogger("records.services").setLevel(logging.WARNING)
    payloads = [path.read_bytes() for path in sorted(FIXTURES.glob("*.json"))]
    resources = sum(len(orjson.loads(p)["entry"]) for p in payloads)
    parse_document(payloads[0])  # warm the model imports outside the timing

    records = [patient_create() for _ in payloads]  # each export goes into a record named for it
    validate = ingest = reingest = 0.0
    gc.disable()
    try:
        for payload, record in zip(payloads, records, strict=True):
            validate += _seconds(lambda payload=payload: parse_document(payload))
            ingest += _seconds(
                lambda payload=payload, record=record: fhir_ingest(
                    payload=payload, actor="system:bench", patient=record
                )
            )
        for payload, record in zip(payloads, records, strict=True):
            reingest += _seconds(
                lambda payload=payload, record=record: fhir_ingest(
                    payload=payload, actor="system:bench", patient=record
                )
            )
    finally:
        gc.enable()
    ratio = validate / ingest
    return [
        Figure("ingest: Synthea resources ingested per second", resources / ingest, "resources/s"),
        Figure("ingest: validate-only resources per second", resources / validate, "resources/s"),
        Figure("ingest: unchanged re-ingest resources per second", resources / reingest, "resources/s"),
        Figure("ingest vs validate-only throughput ratio", ratio, "ratio", f">= {GOAL_RATIO}", ratio >= GOAL_RATIO),
    ]
