"""Sealed versions by row: the StoredVersion shape, one read's single query, and current versions by patient or ids.

What comes back is ciphertext and identities. Turning a StoredVersion into
plaintext is records.decrypt's job, and only the consent gate may call it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import F

from healthledger.lib.db import prepared_cursor
from records.models import Patient, Resource, ResourceVersion

_STORED_FIELDS = (
    "resource__patient_id",
    "resource__resource_type",
    "resource__fhir_id",
    "version",
    "ciphertext",
    "wrapped_data_key",
    "resource__patient__wrapped_key",
    "resource__patient__master_key_id",
    "resource__current_version",
    "resource__head_mac",
)


class StoredVersion(NamedTuple):
    """One version's sealed content with the wrapped keys needed to open it (None once erased).

    A named tuple, not a dataclass: a search page builds a hundred of these per request, and a
    tuple is made from a row in a tenth of the time. Immutable all the same; its repr leaves out
    the sealed bytes and keys.
    """

    patient_id: uuid.UUID
    resource_type: str
    fhir_id: str
    version: int
    ciphertext: bytes
    wrapped_data_key: bytes
    wrapped_patient_key: bytes | None
    master_key_id: str
    # The resource row's current version and its head MAC: a read of the current version checks
    # that the MAC names it (records.decrypt), so a rolled-back row fails loudly.
    current_version: int = 0
    head_mac: bytes = b""

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.fhir_id}/_history/{self.version}"

    @staticmethod
    def references(stored: Sequence[StoredVersion]) -> list[str]:
        """`reference` of each, in order: a page's hundred without a property call each."""
        return [f"{item[1]}/{item[2]}/_history/{item[3]}" for item in stored]

    def __repr__(self) -> str:
        return f"StoredVersion({self.reference}, patient={self.patient_id}, key={self.master_key_id})"


def _stored(row: Sequence[Any]) -> StoredVersion:
    """A StoredVersion from a row of _STORED_FIELDS, from the ORM or a raw cursor (either driver's types)."""
    if type(row[4]) is bytes and type(row[0]) is uuid.UUID and type(row[3]) is int:
        # psycopg's binary rows already hold these types (bytea as bytes, uuid as UUID): taken as they are.
        return StoredVersion._make(row)
    patient_id, resource_type, fhir_id, number, ciphertext, wrapped_data_key, wrapped_key, key_id, current, head = row
    return StoredVersion(
        patient_id=patient_id if isinstance(patient_id, uuid.UUID) else uuid.UUID(str(patient_id)),
        resource_type=resource_type,
        fhir_id=fhir_id,
        version=int(number),
        ciphertext=bytes(ciphertext),
        wrapped_data_key=bytes(wrapped_data_key),
        wrapped_patient_key=bytes(wrapped_key) if wrapped_key is not None else None,
        master_key_id=key_id,
        current_version=int(current),
        head_mac=bytes(head),
    )


def _stored_version_sql(*, pinned: bool) -> str:
    quote = connection.ops.quote_name
    version, resource, patient = (quote(m._meta.db_table) for m in (ResourceVersion, Resource, Patient))
    wanted = "%s" if pinned else "r.current_version"
    return (
        "SELECT r.resource_type, r.fhir_id, v.version, v.ciphertext, v.wrapped_data_key,"  # noqa: S608 (model names)
        " p.wrapped_key, p.master_key_id, r.current_version, r.head_mac"
        f" FROM {version} v JOIN {resource} r ON r.id = v.resource_id JOIN {patient} p ON p.id = r.patient_id"
        f" WHERE r.fhir_id = %s AND r.resource_type = %s AND r.patient_id = %s AND v.version = {wanted}"
    )


def stored_version_get(
    *, patient: Patient, resource_type: str, resource_id: str, version: int | None = None
) -> StoredVersion | None:
    """The current (or given) version of one of the patient's resources, with its keys, in one query.

    Plain SQL on purpose: this is every read's only query, and building it through
    the ORM costs several times what the database spends answering it.
    """
    pinned = version is not None
    sql = _SQL_CACHE.get(pinned)
    if sql is None:
        sql = _SQL_CACHE[pinned] = _stored_version_sql(pinned=pinned)
    patient_key = _PATIENT_PK.get_db_prep_value(patient.pk, connection)
    params: list[Any] = [resource_id, resource_type, patient_key] + ([version] if pinned else [])
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    resource_type, fhir_id, number, ciphertext, wrapped_data_key, wrapped_key, master_key_id, current, head = row
    return StoredVersion(
        patient_id=patient.pk,
        resource_type=resource_type,
        fhir_id=fhir_id,
        version=number,
        ciphertext=bytes(ciphertext),
        wrapped_data_key=bytes(wrapped_data_key),
        wrapped_patient_key=bytes(wrapped_key) if wrapped_key is not None else None,
        master_key_id=master_key_id,
        current_version=int(current),
        head_mac=bytes(head),
    )


_SQL_CACHE: dict[bool, str] = {}


_PATIENT_PK = Patient._meta.get_field("id")


def stored_versions_current(*, patient: Patient) -> list[StoredVersion]:
    """The current version of every resource of the patient, in one query."""
    rows = ResourceVersion.objects.filter(resource__patient_id=patient.pk, version=F("resource__current_version"))
    return [_stored(row) for row in rows.order_by("resource_id").values_list(*_STORED_FIELDS)]


def stored_versions_by_ids(resource_pks: Sequence[int]) -> list[StoredVersion]:
    """The sealed current versions of these resources, in the order given, in one query."""
    rows = ResourceVersion.objects.filter(resource_id__in=resource_pks, version=F("resource__current_version"))
    by_pk = {row[0]: _stored(row[1:]) for row in rows.values_list("resource_id", *_STORED_FIELDS)}
    return [by_pk[pk] for pk in resource_pks if pk in by_pk]
