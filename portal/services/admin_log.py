"""What an administrator does to an account is logged for the person it was done to."""

from __future__ import annotations

from accounts.models import User
from audit.models import AccessLogEntry, Outcome
from audit.services import LogEvent, access_log_append
from records.selectors import patient_for_user

ADMIN_CHANGE = "accounts.admin.change"
ADMIN_PASSWORD = "accounts.admin.password"
ADMIN_SECOND_FACTOR_REMOVE = "accounts.admin.second_factor.remove"
ADMIN_ACTIONS = frozenset({ADMIN_CHANGE, ADMIN_PASSWORD, ADMIN_SECOND_FACTOR_REMOVE})


def account_admin_change_log(*, admin: User, user: User, action: str) -> AccessLogEntry | None:
    """Write an administrator's change to a patient's account to her access log, as the administrator's.

    Call it inside the change's own transaction, so the change and its entry commit together: a
    password set in the admin cannot let anyone sign in as the patient without her seeing who
    did it. Accounts without a record (clinicians, staff) have no access log; None then.
    """
    if action not in ADMIN_ACTIONS:
        raise ValueError(f"not an admin action code: {action!r}")
    patient = patient_for_user(user_id=user.pk)
    if patient is None:
        return None
    event = LogEvent(actor=f"user:{admin.pk}", action=action, outcome=Outcome.PERMIT, patient_ref=patient.pk)
    return access_log_append(event=event)
