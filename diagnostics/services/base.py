"""What every step of a job shares: its errors, the outcome of one delivery, the model lookup, the job's log entry."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from accounts.models import Role, User
from audit.services import LogEvent, access_log_insert
from diagnostics import inference
from diagnostics.models import DiagnosticJob
from healthledger.errors import HealthLedgerError
from records.models import Patient

logger = logging.getLogger(__name__)


class UnknownModel(HealthLedgerError):
    """No model has this id (400)."""


class InvalidJobRequest(HealthLedgerError):
    """A job request that cannot be honoured as asked (wrong purpose for the model ...) (400)."""


@dataclass
class IdempotencyKeyReused(HealthLedgerError):
    """An Idempotency-Key the requester already used for a different request (422)."""

    status: int = field(default=422, kw_only=True)
    issue_code: str = field(default="business-rule", kw_only=True)


@dataclass(frozen=True)
class RunOutcome:
    """What one delivery did: the job's status afterwards, and when to try again if the chain was unreachable."""

    status: str
    retry_in: int | None = None
    did_work: bool = True
    soft_time_limited: bool = False


@dataclass
class _Inputs:
    values: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


class _ConsentGone(Exception):
    """The gate denied a read mid-run: consent ended while the job was reading."""


def model_get(model_id: str) -> Any:
    """The model for an id, or UnknownModel naming the ids there are."""
    try:
        return inference.get_model(model_id)
    except KeyError:
        known = ", ".join(sorted(spec.id for spec in inference.list_models()))
        raise UnknownModel(f"unknown model {model_id!r}; known models: {known}", issue_code="not-supported") from None


def _input_types(spec: Any) -> list[str]:
    return sorted({item.resource_type for item in spec.inputs})


def _owns(user: User, patient: Patient) -> bool:
    return user.pk == patient.user_id and user.role == Role.PATIENT


def _log(job: DiagnosticJob, *, actor: str, action: str, outcome: str, **details: Any) -> None:
    access_log_insert(
        event=LogEvent(
            actor=actor,
            action=action,
            outcome=outcome,
            patient_ref=job.patient_id,
            purpose=job.purpose,
            grant_ref=job.grant_id or "",
            job_id=str(job.id),
            **details,
        )
    )
