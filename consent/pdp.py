"""The policy decision point: may this actor do this action on this patient's data, for this purpose, now?

Pure decision: it reads the database's mirror of the chain (no chain call on the
request path), writes nothing, and never decrypts. The gate logs what it says.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone

from accounts.models import Role, User
from consent.break_glass import break_glass_refusal
from consent.models import Grant, GrantStatus
from consent.purposes import ALL_RESOURCE_TYPES, Action, Purpose
from healthledger.lib.db import prepared_cursor
from records.selectors import RowExtra


@dataclass(frozen=True)
class Decision:
    permit: bool
    # Why, as a short code for the log and for tests ("own-record", "grant", "no-grant", "break-glass" ...).
    basis: str
    grant_id: str = ""
    # The grant's categories ("system|code" for every type, "Type:system|code" for one); empty means the whole
    # resource types. What narrows one type is consent.categories.categories_for(categories, type).
    categories: tuple[str, ...] = ()
    break_glass: bool = False
    # Run-model grants the permit is narrowed to: only what a job released under one of them (the gate checks).
    output_grants: tuple[str, ...] = ()


DENY_NO_GRANT = Decision(permit=False, basis="no-grant")
# What a diagnostic job writes into the record: its grantee may read these, for the jobs they ran.
MODEL_OUTPUT_TYPES = frozenset({"RiskAssessment", "Provenance"})
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
    break_glass_code: str = "",
    interactive: bool = False,
    grants: Sequence[GrantRow] | None = None,
    patient_context: uuid.UUID | None = None,
) -> Decision:
    """Decide one request. `resource_types` must be non-empty; `patient_user_id` is the record owner's user id.

    `grants` are the actor's live grants on this patient for this purpose at `at`, when the
    caller fetched them already (live_grants_expression); otherwise they are read here.
    Break-glass (ETREAT) needs `break_glass_code`, a `reason` and a person signed in
    (`interactive`); a permit here is still subject to the gate's admission (an episode).
    """
    if actor is None or not actor.is_active or not resource_types:
        return Decision(permit=False, basis="anonymous" if actor is None else "invalid-request")
    if patient_context is not None and patient_context != patient_id:
        # A SMART token with `patient/` scopes reaches the patient in its launch context, no other.
        return Decision(permit=False, basis="outside-patient-context")
    if actor.pk == patient_user_id and actor.role == Role.PATIENT:
        # A patient may always read and add to their own record, and run models on it, for themselves.
        if purpose == Purpose.PATRQT:
            return Decision(permit=True, basis="own-record")
        return Decision(permit=False, basis="own-record-wrong-purpose")
    if purpose == Purpose.ETREAT:
        refused = break_glass_refusal(
            actor=actor,
            interactive=interactive,
            code=break_glass_code,
            reason=reason,
            action=action,
            resource_types=resource_types,
        )
        if refused is not None:
            return Decision(permit=False, basis=refused.basis)
        # No grant is looked at: what bounds break-glass is consent.break_glass, a reviewed exception.
        return Decision(permit=True, basis="break-glass", break_glass=True)
    if grants is None:
        grants = live_grants(grantee_id=actor.pk, patient_id=patient_id, purpose=purpose, at=at or timezone.now())
    for grant_id, granted_types, actions, categories in grants:
        if action in actions and _covers(granted_types, resource_types):
            return Decision(permit=True, basis="grant", grant_id=grant_id, categories=tuple(categories))
    if action == Action.READ and set(resource_types) <= MODEL_OUTPUT_TYPES:
        # A run-model grant covers the outputs of the jobs run under it, and nothing else of those types.
        runs = tuple(grant_id for grant_id, _, actions, _ in grants if Action.RUN_MODEL in actions)
        if runs:
            return Decision(permit=True, basis="own-job-output", grant_id=runs[0], output_grants=runs)
    return DENY_NO_GRANT


GrantRow = tuple[str, list[str], list[str], list[str]]  # id, resource types, actions, categories

# Served by the (grantee, patient, status) index; everything else filters a handful of rows.
_LIVE_WHERE = (
    "g.grantee_id = %s AND g.patient_id = {patient} AND g.status = %s AND g.purpose = %s"
    " AND g.not_before <= %s AND g.not_after > %s"
)
_LIVE_SQL: dict[str, str] = {}
_LIVE_EXPRESSION: dict[tuple[str, str], str] = {}


def _grant_table() -> str:
    return connection.ops.quote_name(Grant._meta.db_table)


def _live_sql() -> str:
    sql = _LIVE_SQL.get(connection.vendor)
    if sql is None:
        where = _LIVE_WHERE.format(patient="%s")
        sql = _LIVE_SQL[connection.vendor] = (
            f"SELECT g.id, g.resource_types, g.actions, g.categories FROM {_grant_table()} g WHERE {where}"  # noqa: S608
        )
    return sql


def _json(value: object) -> list[str]:
    # SQLite and Django's psycopg setup hand JSON columns back as text; a driver that parses them gives a list.
    if isinstance(value, str | bytes):
        return list(orjson.loads(value))
    return list(value)  # type: ignore[call-overload]


def _live_params(grantee_id: int, purpose: str, at: datetime) -> tuple[list[object], list[object]]:
    when = connection.ops.adapt_datetimefield_value(at)
    return [grantee_id], [GrantStatus.RECORDED.value, purpose, when, when]


def live_grants(*, grantee_id: int, patient_id: object, purpose: str, at: datetime) -> list[GrantRow]:
    """Recorded, unrevoked grants of this grantee on this patient for this purpose, in force at `at`.

    Plain SQL on purpose: this runs on every request, and building it through the ORM
    costs several times what the database spends answering it.
    """
    before, after = _live_params(grantee_id, purpose, at)
    params = [*before, _PATIENT_FK.get_db_prep_value(patient_id, connection), *after]
    with prepared_cursor() as cursor:
        cursor.execute(_live_sql(), params)
        rows = cursor.fetchall()
    return [(gid, _json(types), _json(actions), _json(categories)) for gid, types, actions, categories in rows]


def live_grant_patients(*, grantee_id: int, purpose: str, at: datetime) -> list[uuid.UUID]:
    """The patients on whom the grantee holds a live grant for this purpose at `at`: live_grants' rule, any patient."""
    before, after = _live_params(grantee_id, purpose, at)
    params: list[Any] = [*before, *after]
    where = _LIVE_WHERE.format(patient="g.patient_id")  # the same rule, with the patient left open
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT g.patient_id FROM {_grant_table()} g WHERE {where}", params)  # noqa: S608
        return [row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0])) for row in cursor.fetchall()]


def live_grants_of_patients(
    *, grantee_id: int, patient_ids: Sequence[object], purpose: str, at: datetime
) -> dict[uuid.UUID, list[GrantRow]]:
    """live_grants for several patients in one statement: patient id -> that patient's rows (none: absent).

    For a research run's chunk, which decides for each participant under their own grant: the same
    rule as live_grants, asked once for the chunk instead of once per participant.
    """
    if not patient_ids:
        return {}
    before, after = _live_params(grantee_id, purpose, at)
    keys = [_PATIENT_FK.get_db_prep_value(pid, connection) for pid in patient_ids]
    where = _LIVE_WHERE.format(patient="g.patient_id")  # the same rule, with the patient among the chunk's
    sql = (
        f"SELECT g.patient_id, g.id, g.resource_types, g.actions, g.categories FROM {_grant_table()} g"  # noqa: S608
        f" WHERE {where} AND g.patient_id IN ({', '.join(['%s'] * len(keys))})"
    )
    found: dict[uuid.UUID, list[GrantRow]] = {}
    params: list[Any] = [*before, *after, *keys]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for pid, gid, types, actions, categories in cursor.fetchall():
            patient = pid if isinstance(pid, uuid.UUID) else uuid.UUID(str(pid))
            found.setdefault(patient, []).append((gid, _json(types), _json(actions), _json(categories)))
    return found


def live_grants_expression(*, grantee: RowExtra, at: datetime) -> RowExtra:
    """The live grants, for every purpose, of the user `grantee` names, on a located row's patient (`p`).

    live_grants as one scalar JSON expression for the statement that locates a row: a read by
    type and id learns the patient only from the row it finds, and asking for the grants inside
    that statement saves the decision its own round trip. `grantee` is an expression too: a user
    id (`%s`), or the API's bearer token's user, when the caller is known only once that same
    statement has run; so each grant carries its purpose and grants_from_expression picks.
    """
    db = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` is a lookup of this thread's connection
    key = (db.vendor, grantee.sql)
    sql = _LIVE_EXPRESSION.get(key)
    if sql is None:
        where = (
            f"g.grantee_id = {grantee.sql} AND g.patient_id = p.id AND g.status = %s"
            " AND g.not_before <= %s AND g.not_after > %s"
        )
        sql = _LIVE_EXPRESSION[key] = _grants_json(where)
    when = db.ops.adapt_datetimefield_value(at)
    return RowExtra(sql=sql, params=(*grantee.params, GrantStatus.RECORDED.value, when, when))


def grantee_id_expression(user_id: int | None) -> RowExtra:
    """A known user as the `grantee` of live_grants_expression (None: nobody, no grants)."""
    return RowExtra(sql="%s", params=(user_id,))


def _grants_json(where: str) -> str:
    if connection.vendor == "postgresql":
        rows = "json_agg(json_build_array(g.id, g.resource_types, g.actions, g.categories, g.purpose))::text"
    else:
        rows = (
            "json_group_array(json_array(g.id, json(g.resource_types), json(g.actions), json(g.categories), g.purpose))"
        )
    return f"(SELECT {rows} FROM {_grant_table()} g WHERE {where})"  # noqa: S608


def grants_from_expression(value: object, *, purpose: str) -> list[GrantRow]:
    """The grants for `purpose` in a live_grants_expression's value (NULL or "[]" when there are none)."""
    if value is None:
        return []
    rows = orjson.loads(value) if isinstance(value, str | bytes) else value
    return [
        (str(gid), list(types), list(actions), list(categories))
        for gid, types, actions, categories, granted_for in rows  # type: ignore[union-attr]
        if granted_for == purpose
    ]
