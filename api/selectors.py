"""Reads the API makes before it asks the gate: where a resource lives, which patient an id names.

Nothing here reads content: these are identities and server metadata (versions, update
times), which the gate and the access log do not guard. What a caller may see of
them is still decided by the gate: a view answers from these only after a permit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from audit.models import AccessLogEntry
from consent.models import Grant
from healthledger.lib.db import prepared_cursor
from records.models import Patient, Resource, ResourceVersion


@dataclass(frozen=True)
class Located:
    """A stored resource version's owner and server metadata."""

    patient: Patient
    version: int
    updated_at: datetime


_SQL: dict[tuple[str, bool], str] = {}
_PATIENT_SQL: dict[str, str] = {}


def _locate_sql(pinned: bool) -> str:
    key = (connection.vendor, pinned)
    sql = _SQL.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        resource, version, patient = (quote(m._meta.db_table) for m in (Resource, ResourceVersion, Patient))
        if pinned:
            sql = (
                "SELECT r.patient_id, p.user_id, v.version, v.created_at"  # noqa: S608 (model tables)
                f" FROM {resource} r JOIN {patient} p ON p.id = r.patient_id"
                f" JOIN {version} v ON v.resource_id = r.id AND v.version = %s"
                " WHERE r.fhir_id = %s AND r.resource_type = %s"
            )
        else:
            sql = (
                "SELECT r.patient_id, p.user_id, r.current_version, r.updated_at"  # noqa: S608 (model tables)
                f" FROM {resource} r JOIN {patient} p ON p.id = r.patient_id"
                " WHERE r.fhir_id = %s AND r.resource_type = %s"
            )
        _SQL[key] = sql
    return sql


def _patient(patient_id: object, user_id: int | None) -> Patient:
    # Only the identity the gate needs (in field order, as from_db wants); any other field loads on access.
    pk = patient_id if isinstance(patient_id, uuid.UUID) else uuid.UUID(str(patient_id))
    return Patient.from_db(connection.alias, ["id", "user_id"], [pk, user_id])


def _when(value: object) -> datetime:
    if isinstance(value, str):  # SQLite hands raw cursors text
        parsed = parse_datetime(value)
        assert parsed is not None
        value = parsed
    assert isinstance(value, datetime)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def resource_locate(*, resource_type: str, resource_id: str, version: int | None = None) -> Located | None:
    """Whose record holds Type/id (or that version of it), in one indexed query; None when nothing does."""
    params: list[str | int] = [resource_id, resource_type] if version is None else [version, resource_id, resource_type]
    with connection.cursor() as cursor:
        cursor.execute(_locate_sql(version is not None), params)
        row = cursor.fetchone()
    if row is None:
        return None
    patient_id, user_id, number, at = row
    return Located(patient=_patient(patient_id, user_id), version=int(number), updated_at=_when(at))


def patient_by_fhir_id(*, fhir_id: str) -> Patient | None:
    """The record whose FHIR Patient has this server id (or, for a record without one, whose own id it is).

    Every search that names its patient asks this first: one prepared statement, not the ORM.
    """
    with prepared_cursor() as cursor:
        cursor.execute(_patient_sql(), [fhir_id])
        row = cursor.fetchone()
    if row is not None:
        return _patient(row[0], row[1])
    try:
        pk = uuid.UUID(fhir_id)
    except ValueError:
        return None
    return Patient.objects.filter(pk=pk, fhir_id="").only("id", "user_id").first()


def _patient_sql() -> str:
    sql = _PATIENT_SQL.get(connection.vendor)
    if sql is None:
        table = connection.ops.quote_name(Patient._meta.db_table)
        # The `<> ''` lets a prepared (generic) plan use the partial unique index on fhir_id.
        sql = _PATIENT_SQL[connection.vendor] = f"SELECT id, user_id FROM {table} WHERE fhir_id = %s AND fhir_id <> ''"  # noqa: S608 (model table)
    return sql


def patient_of_user(*, user_id: int) -> Patient | None:
    return Patient.objects.filter(user_id=user_id).only("id", "user_id", "fhir_id").first()


def grants_visible_to(*, user_id: int) -> QuerySet[Grant]:
    """Grants the user may read as Consent resources: those on their own record and those given to them."""
    return (
        Grant.objects.filter(Q(patient__user_id=user_id) | Q(grantee_id=user_id))
        .select_related("patient", "grantee")
        .order_by("created_at", "id")
    )


def access_log_for_patient_user(*, user_id: int) -> QuerySet[AccessLogEntry]:
    """Access-log entries about the user's own record, oldest first (stable paging while the log grows)."""
    patient = patient_of_user(user_id=user_id)
    if patient is None:
        return AccessLogEntry.objects.none()
    return AccessLogEntry.objects.filter(patient_ref=patient.pk).order_by("at", "id")


def patients_by_ids(*, ids: list[uuid.UUID]) -> list[Patient]:
    """Records by id, not erased, in a stable order (their FHIR Patient id)."""
    return list(Patient.objects.filter(pk__in=ids, erased_at__isnull=True).order_by("fhir_id", "pk"))
