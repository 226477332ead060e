"""Whether a job may still run and release: the database under its grant, then the chain (per block in a worker)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
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


def _consent_reason(
    job: DiagnosticJob, spec: Any, *, grant: Grant | None, requester: User, patient: Patient | None = None
) -> str:
    """Empty when the job may still run and release; else why not. Database only (the mirror of the chain).

    `requester` as read with the job's row now (an account deactivated since the start is refused);
    `patient` only for its id and owner, which never change.
    """
    patient = patient or Patient.objects.only("id", "user_id").get(pk=job.patient_id)
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


# How long a block number, once asked, stands for "the latest block" in this worker process. Below the block
# interval of the chains the project runs on (Besu QBFT 1-2 s, an L2 about 2 s; anvil mines only when a
# transaction comes): a revocation mined is seen by the checks that begin at most this long after it. The
# database check, made under the grant's row lock at release, sees a revocation the moment it commits.
BLOCK_MAX_AGE_SECONDS = 0.25


@dataclass
class _ChainView:
    """The chain as this worker process last asked it: the latest block, when, and the isActive answers at it."""

    client: object = None  # the chain client asked: another chain (a reset, a test's) starts afresh
    block: int = -1
    asked_at: float = -math.inf
    answers: dict[str, bool] = field(default_factory=dict)


_view = _ChainView()
_view_lock = threading.Lock()
_per_block: ContextVar[bool] = ContextVar("diagnostics_chain_per_block", default=False)


@contextmanager
def chain_answers_per_block() -> Iterator[None]:
    """Within: the chain is asked about a grant at most once per block by this worker process, for every job in it.

    The chain's state changes only from one block to the next, so an answer given at block N is the
    answer for every check made while N is the latest block, whichever job makes it (a worker's jobs in
    flight, its batches one after another). The latest block number is asked again once
    BLOCK_MAX_AGE_SECONDS have passed, and a new block (a revocation mined) empties the answers. Outside
    this context every check asks the chain itself.
    """
    token = _per_block.set(True)
    try:
        yield
    finally:
        _per_block.reset(token)


def _latest_block() -> int:
    client, now = chain_client(), time.monotonic()
    if client is not _view.client or now - _view.asked_at >= BLOCK_MAX_AGE_SECONDS:
        block = client.block_number()  # ChainUnavailable leaves the view as it was
        if client is not _view.client or block != _view.block:
            _view.client, _view.block, _view.answers = client, block, {}
        _view.asked_at = now
    return _view.block


def _chain_active(grant: Grant) -> bool:
    if not _per_block.get():
        return grant_active_on_chain(grant)
    # One question at a time per process: jobs of one block share an answer instead of asking together.
    with _view_lock:
        _latest_block()
        if grant.id not in _view.answers:
            _view.answers[grant.id] = grant_active_on_chain(grant)
        return _view.answers[grant.id]


def _chain_reason(job: DiagnosticJob, grant: Grant | None) -> str:
    """Empty when the chain says the job's grant is active (or the job needs none). Raises ChainUnavailable."""
    if job.grant_id is None or grant is None:
        return ""
    return "" if _chain_active(grant) else "consent-ended (not active on chain)"


def _consent_check(job: DiagnosticJob, spec: Any) -> tuple[str, Grant | None]:
    """Why the job may not start ("" when it may), and the job's grant (its id, grantee and scope never change).

    The job's requester, record and grant are those read with its row as the delivery began (_delivery_begin).
    """
    grant = job.grant if job.grant_id else None
    reason = _consent_reason(job, spec, grant=grant, requester=job.requester, patient=job.patient)
    return reason or _chain_reason(job, grant), grant
