"""The two raw statements of a job's delivery: claim the job at the start, lock it with its grant at the release.

Raw on purpose: every delivery runs both, and through the ORM each was two statements compiled afresh
each time, which cost more than the database spent answering them. Here each is one fixed statement,
prepared once per connection on PostgreSQL. The claim is the compare-and-set UPDATE whose RETURNING row
(the job as claimed) is joined to its requester, record and grant; the release's lock takes the job's row
and its grant's in one SELECT ... FOR UPDATE. The rows become model instances through the same field
converters the ORM applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection
from django.db.models import F, Model, Value
from django.db.models.functions import Coalesce

from accounts.models import User
from consent.models import Grant
from diagnostics.models import TERMINAL_STATUSES, DiagnosticJob, JobStatus
from healthledger.lib.db import prepared_cursor
from records.models import Patient

_MODELS: tuple[type[Model], ...] = (DiagnosticJob, User, Patient, Grant)
_SQL: dict[str, str] = {}
_LOCKED: tuple[type[Model], ...] = (DiagnosticJob, User, Grant)


def _columns(model: type[Model]) -> list[Any]:
    return list(model._meta.concrete_fields)


def _sql() -> str:
    quote = connection.ops.quote_name
    job, user, patient, grant = (quote(m._meta.db_table) for m in _MODELS)
    returned = ", ".join(quote(f.column) for f in _columns(DiagnosticJob))
    selected = ", ".join(
        f"{alias}.{quote(f.column)}" for alias, model in zip("cupg", _MODELS, strict=True) for f in _columns(model)
    )
    return (
        f"WITH claimed AS (UPDATE {job} SET deliveries = deliveries + 1, status = %s,"  # noqa: S608 (model names)
        " started_at = COALESCE(started_at, %s), progress = 0, updated_at = %s"
        " WHERE id = %s AND deliveries < orderly_retries + %s AND NOT (status = ANY(%s))"
        f" RETURNING {returned})"
        f" SELECT {selected} FROM claimed c JOIN {user} u ON u.id = c.requester_id"
        f" JOIN {patient} p ON p.id = c.patient_id LEFT JOIN {grant} g ON g.id = c.grant_id"
    )


def _converters(model: type[Model]) -> tuple[list[str], list[tuple[Any, list[Any]]]]:
    """The model's attribute names, and per column its expression and the converters the ORM would apply."""
    cached = _CONVERTERS.get(model)
    if cached is None:
        fields = _columns(model)
        per_column = []
        for field in fields:
            expression = field.get_col(model._meta.db_table)
            per_column.append(
                (expression, [*connection.ops.get_db_converters(expression), *field.get_db_converters(connection)])
            )
        cached = _CONVERTERS[model] = ([f.attname for f in fields], per_column)
    return cached


_CONVERTERS: dict[type[Model], tuple[list[str], list[tuple[Any, list[Any]]]]] = {}
M = TypeVar("M", bound=Model)


def _instance(model: type[M], values: Sequence[Any]) -> M:
    names, per_column = _converters(model)
    converted = []
    for (expression, converters), value in zip(per_column, values, strict=True):
        for convert in converters:
            value = convert(value, expression, connection)
        converted.append(value)
    return model.from_db(connection.alias, names, converted)


def _split(row: Sequence[Any], models: Sequence[type[Model]] = _MODELS) -> Iterable[Sequence[Any]]:
    at = 0
    for model in models:
        width = len(_columns(model))
        yield row[at : at + width]
        at += width


def job_claim(*, job_id: str, max_lost: int, now: datetime) -> DiagnosticJob | None:
    """Count a delivery of a job that is not terminal and not poison, mark it running, and return it.

    The job comes with its requester, record and grant (None when it has none) already loaded; None
    when the compare-and-set claimed nothing (missing, terminal, poison: the caller's locked path decides).
    Autocommitted outside a transaction, under the row lock the UPDATE takes.
    """
    if connection.vendor != "postgresql":
        return None if not _claim_orm(job_id, max_lost, now) else _job_orm(job_id)
    sql = _SQL.get("claim") or _SQL.setdefault("claim", _sql())
    terminal = sorted(str(status) for status in TERMINAL_STATUSES)
    key = DiagnosticJob._meta.pk.get_db_prep_value(job_id, connection)  # type: ignore[union-attr]
    with prepared_cursor() as cursor:
        cursor.execute(sql, [JobStatus.RUNNING.value, now, now, key, max_lost, terminal])
        row = cursor.fetchone()
    if row is None:
        return None
    job_values, user_values, patient_values, grant_values = _split(row)
    job = _instance(DiagnosticJob, job_values)
    job.requester = _instance(User, user_values)
    job.patient = _instance(Patient, patient_values)
    job.grant = _instance(Grant, grant_values) if job.grant_id is not None else None  # type: ignore[assignment,attr-defined]
    return job


def _claim_orm(job_id: str, max_lost: int, now: datetime) -> int:
    return (
        DiagnosticJob.objects.filter(pk=job_id, deliveries__lt=F("orderly_retries") + max_lost)
        .exclude(status__in=TERMINAL_STATUSES)
        .update(
            deliveries=F("deliveries") + 1,
            status=JobStatus.RUNNING,
            started_at=Coalesce(F("started_at"), Value(now)),
            progress=0,
            updated_at=now,
        )
    )


def _job_orm(job_id: str) -> DiagnosticJob:
    return DiagnosticJob.objects.select_related("requester", "patient", "grant").get(pk=job_id)


def _lock_sql() -> str:
    quote = connection.ops.quote_name
    job, user, grant = (quote(m._meta.db_table) for m in _LOCKED)
    selected = ", ".join(
        f"{alias}.{quote(f.column)}" for alias, model in zip("jug", _LOCKED, strict=True) for f in _columns(model)
    )
    # FOR UPDATE OF j, g: the requester is read as it is now, unlocked.
    return (
        f"SELECT {selected} FROM {job} j JOIN {user} u ON u.id = j.requester_id"  # noqa: S608 (model names)
        f" JOIN {grant} g ON g.id = j.grant_id WHERE j.id = %s FOR UPDATE OF j, g"
    )


def job_and_grant_lock(*, job_id: Any) -> tuple[DiagnosticJob, Grant]:
    """Lock a job's row and its grant's (in a transaction the caller holds) and read both, with the requester.

    For a job that has a grant. The job's row lock makes a second delivery wait and then find the job terminal;
    the grant's is the one grant_revoke takes, so a revocation commits before the release's check or waits
    for the release. One statement on PostgreSQL; elsewhere the two the ORM makes, job first as here.
    """
    if connection.vendor != "postgresql":
        job = DiagnosticJob.objects.select_for_update(of=("self",)).select_related("requester").get(pk=job_id)
        return job, Grant.objects.select_for_update().get(pk=job.grant_id)  # type: ignore[attr-defined]
    sql = _SQL.get("lock") or _SQL.setdefault("lock", _lock_sql())
    key = DiagnosticJob._meta.pk.get_db_prep_value(job_id, connection)  # type: ignore[union-attr]
    with prepared_cursor() as cursor:
        cursor.execute(sql, [key])
        row = cursor.fetchone()
    if row is None:
        raise DiagnosticJob.DoesNotExist(f"no job {job_id} with a grant")
    job_values, user_values, grant_values = _split(row, _LOCKED)
    job = _instance(DiagnosticJob, job_values)
    job.requester = _instance(User, user_values)
    grant = _instance(Grant, grant_values)
    return job, grant
