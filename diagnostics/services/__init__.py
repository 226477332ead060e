"""Diagnostic jobs: request one, run one (in a worker), and release its one result.

The run is built for at-least-once delivery. Every step that changes the job takes the
job's row lock and first checks the job is not already terminal, so a second delivery of
a finished job does nothing, and the release (RiskAssessment, Provenance, JobResult, log
entry and terminal state) is one transaction: it happens once or not at all.

Consent is checked three times: when the job is requested (the grant is recorded on the
job), when a delivery starts (database and chain), and right before the release
(database under the grant's row lock, and chain). Between those, every input read goes
through the gate, which decides again and logs the read with the job id: a revocation
seen at any point ends the job denied, with nothing read after it and nothing released.

The package, by concern: base (errors, outcome, model lookup, log entry), request, delivery (the job row's
states under its lock), consent_checks, inputs, release, run. Callers import from here.
"""

from __future__ import annotations

from diagnostics.services.base import IdempotencyKeyReused, InvalidJobRequest, RunOutcome, UnknownModel, model_get
from diagnostics.services.consent_checks import chain_answers_per_block
from diagnostics.services.delivery import MAX_CHAIN_RETRIES, MAX_LOST_DELIVERIES
from diagnostics.services.inputs import _inputs_read
from diagnostics.services.request import (
    as_of_check,
    diagnostic_job_request,
    diagnostic_jobs_enqueue,
    idempotency_key_check,
)
from diagnostics.services.run import diagnostic_job_execute, diagnostic_job_fail

__all__ = [
    "MAX_CHAIN_RETRIES",
    "MAX_LOST_DELIVERIES",
    "IdempotencyKeyReused",
    "InvalidJobRequest",
    "RunOutcome",
    "UnknownModel",
    "_inputs_read",
    "as_of_check",
    "chain_answers_per_block",
    "diagnostic_job_execute",
    "diagnostic_job_fail",
    "diagnostic_job_request",
    "diagnostic_jobs_enqueue",
    "idempotency_key_check",
    "model_get",
]
