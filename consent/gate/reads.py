"""Single reads: one resource (or one version of it), decided, logged, then decrypted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.utils import timezone

from audit.services import access_log_commit
from consent.gate.caller import Caller, DeferredCaller
from consent.gate.decisions import _decide, _deny, _event, _narrowed
from consent.gate.opening import _open
from consent.pdp import (
    Decision,
    grantee_id_expression,
    grants_from_expression,
    live_grants_expression,
)
from consent.purposes import Action
from healthledger.errors import KeyDestroyed, ResourceNotFound
from records.models import Patient
from records.selectors import (
    RowExtra,
    StoredVersion,
    stored_version_get,
    stored_version_locate,
)


def _read_permitted(caller: Caller, patient: Patient, decision: Decision, stored: StoredVersion) -> bytes:
    """Decrypt in memory, commit the permit entry, and only then hand the bytes out.

    The order is the guarantee: a version that fails to decrypt is never logged as read, and no
    byte leaves before its entry is committed. One autocommit INSERT does it, without the
    BEGIN/COMMIT round trips a transaction around the read would add to every request.
    """
    body = _open(stored, patient, caller)
    access_log_commit(event=_event(caller, patient, "records.read", decision, resource_ids=(stored.reference,)))
    return body


def resource_read(
    *,
    caller: Caller,
    patient: Patient,
    resource_type: str,
    resource_id: str,
    version: int | None = None,
    action: str = Action.READ,
) -> bytes:
    """One resource's stored canonical JSON (current version, or `version`), decided and logged.

    Raises ResourceNotFound when denied or missing (indistinguishable), KeyDestroyed
    when the record was erased, IntegrityFailure when the stored bytes were tampered with.
    """
    asked = f"{resource_type}/{resource_id}" + (f"/_history/{version}" if version is not None else "")
    decision = _narrowed(_decide(caller, patient, action, [resource_type]), patient, resource_type, resource_id)
    if not decision.permit:
        raise _deny(caller, patient, "records.read", decision, resource_ids=(asked,))
    stored = stored_version_get(patient=patient, resource_type=resource_type, resource_id=resource_id, version=version)
    if stored is None:
        if Patient.objects.filter(pk=patient.pk, erased_at__isnull=False).exists():
            # The caller may see this record (decided above): it is gone, not missing.
            raise KeyDestroyed("this patient's record was erased; its data can never be decrypted again")
        # Nothing was read, so nothing is logged as read; the caller sees what a stranger sees.
        raise ResourceNotFound("resource not found")
    return _read_permitted(caller, patient, decision, stored)


@dataclass(frozen=True)
class ReadResult:
    body: bytes
    version: int
    created_at: datetime


def resource_read_by_id(
    *,
    caller: Caller | DeferredCaller,
    resource_type: str,
    resource_id: str,
    version: int | None = None,
    action: str = Action.READ,
) -> ReadResult:
    """Type/id (or that version of it) wherever it is stored: the API's read, where only the row names the patient.

    One query finds the version with its owner, its keys and the caller's live grants on that
    owner (and, for a DeferredCaller, who the caller is), then the same decision, narrowing,
    logging and decryption as resource_read. A missing resource and a denied one raise the same
    ResourceNotFound; only the deny is logged (a missing one names no patient).
    """
    now = timezone.now()
    identity: tuple[RowExtra, ...]
    if isinstance(caller, DeferredCaller):
        identity, grantee = (caller.identity,), caller.actor_id
    else:  # an anonymous caller has no grants (and is denied before they are looked at)
        identity, grantee = (), grantee_id_expression(caller.actor.pk if caller.actor is not None else None)
    located = stored_version_locate(
        resource_type=resource_type,
        resource_id=resource_id,
        version=version,
        extras=(*identity, live_grants_expression(grantee=grantee, at=now)),
    )
    if isinstance(caller, DeferredCaller):
        caller = caller.resolve(located.extras[0] if located is not None else None)
    if located is None:
        raise ResourceNotFound("resource not found")
    grants = grants_from_expression(located.extras[-1], purpose=caller.purpose)
    patient = Patient.from_db(connection.alias, ["id", "user_id"], [located.stored.patient_id, located.patient_user_id])
    asked = f"{resource_type}/{resource_id}" + (f"/_history/{version}" if version is not None else "")
    decision = _decide(caller, patient, action, [resource_type], at=now, grants=grants)
    decision = _narrowed(decision, patient, resource_type, resource_id)
    if not decision.permit:
        raise _deny(caller, patient, "records.read", decision, resource_ids=(asked,))
    body = _read_permitted(caller, patient, decision, located.stored)
    return ReadResult(body=body, version=located.stored.version, created_at=located.created_at)
