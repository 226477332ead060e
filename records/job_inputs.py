"""A diagnostic job's inputs as sealed current versions: one record's declared searches in one fixed statement.

Raw on purpose, like the single read's (records.selectors.stored): a job asks the same shape of question
every time (its record's own Patient resource, some types whole, some types by code), and on PostgreSQL
this asks it in one prepared statement instead of one compiled query per type. The tokens are the
record's own blind-index code tokens, each paired with the type it is searched in, so a code matches only
in the type whose search names it (as one search per type would).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection

from healthledger.lib.db import prepared_cursor
from records import blind_index
from records.models import IndexToken, Patient, Resource, ResourceVersion
from records.selectors import StoredVersion, stored_matching_of_patients, stored_patient_resources
from records.selectors.stored import _PATIENT_PK, _stored


@dataclass(frozen=True)
class TypeSearch:
    """Every current resource of a type in the record carrying one of `codes` (none: the whole type)."""

    resource_type: str
    codes: tuple[str, ...] = ()


def _sql() -> str:
    quote = connection.ops.quote_name
    resource, version, patient, token = (
        quote(m._meta.db_table) for m in (Resource, ResourceVersion, Patient, IndexToken)
    )
    # The three kinds of match as a UNION of ids, each served by an index ((patient, type) or (token,
    # resource)); only the matched rows are joined to their versions and ciphertext.
    return (
        "SELECT r.patient_id, r.resource_type, r.fhir_id, v.version, v.ciphertext, v.wrapped_data_key,"  # noqa: S608
        " p.wrapped_key, p.master_key_id, r.current_version, r.head_mac FROM ("
        f" SELECT id FROM {resource} WHERE patient_id = %s AND resource_type = 'Patient' AND fhir_id = %s"
        f" UNION SELECT id FROM {resource} WHERE patient_id = %s AND resource_type = ANY(%s::text[])"
        " UNION SELECT r.id FROM unnest(%s::text[], %s::bytea[]) AS w(resource_type, token)"
        f" JOIN {token} t ON t.token = w.token"
        f" JOIN {resource} r ON r.id = t.resource_id AND r.resource_type = w.resource_type AND r.patient_id = %s"
        f") m JOIN {resource} r ON r.id = m.id"
        f" JOIN {version} v ON v.resource_id = r.id AND v.version = r.current_version"
        f" JOIN {patient} p ON p.id = r.patient_id ORDER BY r.id"
    )


_SQL: list[str] = []


def stored_job_inputs(
    *, patient: Patient, searches: Sequence[TypeSearch], patient_resource: bool
) -> list[StoredVersion]:
    """The record's own Patient resource (when asked and it has one), then each search's matches in storage order.

    Name each type in one search only: on PostgreSQL a version two searches match comes once, elsewhere once
    per search. One statement on PostgreSQL; elsewhere one query per search (records.selectors.cohort's, for
    a chunk of one record).
    """
    order = {search.resource_type: index for index, search in enumerate(searches)}
    fhir_id = patient.fhir_id if patient_resource else ""
    if connection.vendor != "postgresql":
        found = stored_patient_resources(patients=[patient]) if fhir_id else []
        for search in searches:
            found += stored_matching_of_patients(
                patients=[patient], resource_type=search.resource_type, codes=search.codes
            )
        return found
    whole = [search.resource_type for search in searches if not search.codes]
    pairs = [
        (search.resource_type, blind_index.token(patient_id=patient.pk, kind="code", value=code))
        for search in searches
        for code in search.codes
    ]
    if not _SQL:
        _SQL.append(_sql())
    key = _PATIENT_PK.get_db_prep_value(patient.pk, connection)
    params = [key, fhir_id or "", key, whole, [t for t, _ in pairs], [b for _, b in pairs], key]
    with prepared_cursor(binary=True) as cursor:
        cursor.execute(_SQL[0], params)
        rows = cursor.fetchall()
    stored = [_stored(row) for row in rows]  # storage order (ORDER BY r.id)
    own = [item for item in stored if item.resource_type == "Patient" and item.fhir_id == fhir_id]
    rest = [item for item in stored if item.resource_type in order and item not in own]
    rest.sort(key=lambda item: order[item.resource_type])  # stable: storage order within each search
    return own + rest
