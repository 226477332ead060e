"""Whether a job may still run and release: the database under its grant, then the chain (per block in a batch)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.utils import timezone

from accounts.models import User
from consent.chain import grant_active_on_chain
from consent.models import Grant, GrantStatus
from consent.pdp import decide
from consent.purposes import Action
from diagnostics.models import DiagnosticJob
from diagnostics.services.base import _input_types
from ledger.client import chain_client
from records.models import Patient


def _consent_reason(job: DiagnosticJob, spec: Any, *, grant: Grant | None, requester: User | None = None) -> str:
    """Empty when the job may still run and release; else why not. Database only (the mirror of the chain)."""
    patient = Patient.objects.only("id", "user_id", "erased_at").get(pk=job.patient_id)
    requester = requester or User.objects.get(pk=job.requester_id)
    decision = decide(
        actor=requester,
        patient_id=patient.pk,
        patient_user_id=patient.user_id,
        action=Action.RUN_MODEL,
        resource_types=_input_types(spec),
        purpose=job.purpose,
    )
    if not decision.permit:
        return f"consent-ended ({decision.basis})"
    if job.grant_id is None:
        return "" if decision.basis == "own-record" else "consent-ended (no grant)"
    # The job runs under the grant that permitted it; another grant issued since does not adopt it.
    if grant is None or grant.status != GrantStatus.RECORDED:
        return "consent-ended (grant revoked)"
    if grant.effective_status(timezone.now()) != GrantStatus.RECORDED:
        return "consent-ended (grant outside its window)"
    return ""


# (grant id, block number) -> the chain's isActive answer, shared by the jobs a worker runs in one batch.
_block_answers: ContextVar[dict[tuple[str, int], bool] | None] = ContextVar("diagnostics_block_answers", default=None)


@contextmanager
def chain_answers_per_block() -> Iterator[None]:
    """Within: the chain is asked about a grant at most once per block, whichever job of the batch asks.

    The chain's state changes only from one block to the next, so an answer given at block N is the
    answer for every check made while N is the latest block: each check still reads the latest block
    number, and a new block (a revocation mined) means asking again. Outside this context every check
    asks the chain itself.
    """
    token = _block_answers.set({})
    try:
        yield
    finally:
        _block_answers.reset(token)


def _chain_active(grant: Grant) -> bool:
    answers = _block_answers.get()
    if answers is None:
        return grant_active_on_chain(grant)
    key = (grant.id, chain_client().block_number())
    if key not in answers:
        answers[key] = grant_active_on_chain(grant)
    return answers[key]


def _chain_reason(job: DiagnosticJob, grant: Grant | None) -> str:
    """Empty when the chain says the job's grant is active (or the job needs none). Raises ChainUnavailable."""
    if job.grant_id is None or grant is None:
        return ""
    return "" if _chain_active(grant) else "consent-ended (not active on chain)"


def _consent_check(job: DiagnosticJob, spec: Any, requester: User) -> tuple[str, Grant | None]:
    """Why the job may not start ("" when it may), and the job's grant (its id, grantee and scope never change)."""
    grant = Grant.objects.filter(pk=job.grant_id).first() if job.grant_id else None
    return _consent_reason(job, spec, grant=grant, requester=requester) or _chain_reason(job, grant), grant
