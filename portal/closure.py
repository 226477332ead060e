"""Closing an account: the person can no longer sign in; the record stays as it is (erasure is another, separate act).

Closing is for someone who leaves HealthLedger but may need the record kept, as the law or a
clinic may ask: nothing is decrypted, deleted or shredded. Sharing must have ended first: a
grant is revoked by the patient's own signature, which the server cannot make for her.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.models import Outcome
from audit.services import LogEvent, access_log_append
from healthledger.errors import ConsentDenied
from portal.selectors import patient_grants
from records.models import Patient

SHARING_STATUSES = ("recorded", "pending", "not yet valid")


class AccountNotClosed(ConsentDenied):
    """The account stays open: a wrong password, or access still shared."""


def account_close(*, user: User, patient: Patient, password: str) -> User:
    """Close the patient's own account: inactive from now on (every session ends), written to her access log."""
    if not user.check_password(password):
        raise AccountNotClosed("that is not your password")
    sharing = [r for r in patient_grants(patient=patient, now=timezone.now()) if r.status in SHARING_STATUSES]
    if sharing:
        raise AccountNotClosed("you still share your record: revoke every access on the Sharing page first")
    with transaction.atomic():
        # The auth backend refuses an inactive user on her next request: every open session ends with this.
        user.is_active = False
        user.save(update_fields=["is_active"])
        access_log_append(
            event=LogEvent(
                actor=f"user:{user.pk}", action="accounts.close", outcome=Outcome.PERMIT, patient_ref=patient.pk
            )
        )
    return user
