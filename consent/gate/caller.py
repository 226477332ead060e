"""Who asks the gate: the caller every gate function decides on and logs, known up front or named by the read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from accounts.models import User
from consent.purposes import Purpose
from records.selectors import (
    RowExtra,
)

PURPOSE_PATIENT_REQUEST = Purpose.PATRQT.value


@dataclass(frozen=True)
class Caller:
    """Who asks, why, and on whose behalf: what every gate function needs to decide and to log."""

    actor: User | None
    purpose: str = PURPOSE_PATIENT_REQUEST
    reason: str = ""  # the written reason break-glass needs ...
    break_glass_code: str = ""  # ... with its code (consent.purposes.BreakGlassCode)
    # A person signed in for this request (an authorization-code token), not a backend service.
    interactive: bool = False
    job_id: str = ""  # set when a worker acts for a job
    # The one patient this caller may reach (a SMART token's launch patient); None: whoever the grants allow.
    patient_context: uuid.UUID | None = None

    @property
    def ref(self) -> str:
        if self.actor is None:
            return "anonymous"
        return f"job:{self.job_id}" if self.job_id else f"user:{self.actor.pk}"


@dataclass(frozen=True)
class DeferredCaller:
    """A caller that the read's own statement identifies, rather than one known before it.

    The API's bearer token: asking for the token's row inside the statement that finds the
    resource saves every read a round trip. `identity` is a scalar SQL expression (the token's
    row) whose value `resolve` turns into the Caller, or raises (unknown or expired token,
    scopes that do not cover the read, a bad purpose); `actor_id` names the acting user's id,
    for the grants fetched alongside. `resolve` gets None when the resource was not found, so
    that it still authenticates first: a bad token is refused before a missing resource is.
    """

    identity: RowExtra
    actor_id: RowExtra
    resolve: Callable[[object], Caller]
