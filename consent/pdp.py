"""The policy decision point: may this actor do this action on this patient's data, for this purpose, now?

Pure decision: it reads the database's mirror of the chain (no chain call on the
request path), writes nothing, and never decrypts. The gate logs what it says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.db import connection
from django.utils import timezone

from accounts.models import Role, User
from consent.models import Grant, GrantStatus
from consent.purposes import ALL_RESOURCE_TYPES, Action, Purpose

# A break-glass reason must say something; a single word is not a reason.
MIN_BREAK_GLASS_REASON = 10


@dataclass(frozen=True)
class Decision:
    permit: bool
    # Why, as a short code for the log and for tests ("own-record", "grant", "no-grant", "break-glass" ...).
    basis: str
    grant_id: str = ""
    # Categories ("system|code") the permit is narrowed to; empty means the whole resource types.
    categories: tuple[str, ...] = ()
    break_glass: bool = False


DENY_NO_GRANT = Decision(permit=False, basis="no-grant")
_PATIENT_FK = Grant._meta.get_field("patient").target_field  # type: ignore[union-attr]


def _covers(granted: Sequence[str], asked: Sequence[str]) -> bool:
    return ALL_RESOURCE_TYPES in granted or set(asked) <= set(granted)


def decide(
    *,
    actor: User | None,
    patient_id: object,
    patient_user_id: int | None,
    action: str,
    resource_types: Sequence[str],
    purpose: str,
    at: datetime | None = None,
    reason: str = "",
) -> Decision:
    """Decide one request. `resource_types` must be non-empty; `patient_user_id` is the record owner's user id."""
    if actor is None or not actor.is_active or not resource_types:
        return Decision(permit=False, basis="anonymous" if actor is None else "invalid-request")
    if actor.pk == patient_user_id and actor.role == Role.PATIENT:
        # A patient may always read and add to their own record, and run models on it, for themselves.
        if purpose == Purpose.PATRQT:
            return Decision(permit=True, basis="own-record")
        return Decision(permit=False, basis="own-record-wrong-purpose")
    if purpose == Purpose.ETREAT:
        return _break_glass(actor=actor, action=action, reason=reason)
    for grant_id, granted_types, actions, categories in live_grants(
        grantee_id=actor.pk, patient_id=patient_id, purpose=purpose, at=at or timezone.now()
    ):
        if action in actions and _covers(granted_types, resource_types):
            return Decision(permit=True, basis="grant", grant_id=grant_id, categories=tuple(categories))
    return DENY_NO_GRANT


_LIVE_SQL: dict[str, str] = {}


def _live_sql() -> str:
    sql = _LIVE_SQL.get(connection.vendor)
    if sql is None:
        table = connection.ops.quote_name(Grant._meta.db_table)
        # Served by the (grantee, patient, status) index; everything else filters a handful of rows.
        sql = _LIVE_SQL[connection.vendor] = (
            f"SELECT id, resource_types, actions, categories FROM {table}"  # noqa: S608 (model table name)
            " WHERE grantee_id = %s AND patient_id = %s AND status = %s AND purpose = %s"
            " AND not_before <= %s AND not_after > %s"
        )
    return sql


def _json(value: object) -> list[str]:
    # SQLite and Django's psycopg setup hand JSON columns back as text; a driver that parses them gives a list.
    if isinstance(value, str | bytes):
        return list(orjson.loads(value))
    return list(value)  # type: ignore[call-overload]


def live_grants(
    *, grantee_id: int, patient_id: object, purpose: str, at: datetime
) -> list[tuple[str, list[str], list[str], list[str]]]:
    """Recorded, unrevoked grants of this grantee on this patient for this purpose, in force at `at`.

    Plain SQL on purpose: this runs on every request, and building it through the ORM
    costs several times what the database spends answering it.
    """
    when = connection.ops.adapt_datetimefield_value(at)
    params = [
        grantee_id,
        _PATIENT_FK.get_db_prep_value(patient_id, connection),
        GrantStatus.RECORDED.value,
        purpose,
        when,
        when,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_live_sql(), params)
        rows = cursor.fetchall()
    return [(gid, _json(types), _json(actions), _json(categories)) for gid, types, actions, categories in rows]


def _break_glass(*, actor: User, action: str, reason: str) -> Decision:
    # Break-glass is for a clinician in an emergency with no grant in place: read only, a written
    # reason, flagged in the log and shown to the patient on their dashboard.
    if actor.role != Role.CLINICIAN:
        return Decision(permit=False, basis="break-glass-not-clinician")
    if action != Action.READ:
        return Decision(permit=False, basis="break-glass-read-only")
    if len(reason.strip()) < MIN_BREAK_GLASS_REASON:
        return Decision(permit=False, basis="break-glass-needs-reason")
    return Decision(permit=True, basis="break-glass", break_glass=True)
