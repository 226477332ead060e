"""Planning and writing one parsed FHIR document: owners, server ids, versions, tokens.

Called by records.services.fhir_ingest inside its transaction. The whole document
is planned first (every reject raised before the first write), then written with
a handful of bulk statements: no per-resource queries.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, models
from django.utils import timezone

from healthledger.errors import InvalidFHIR, KeyDestroyed, OutcomeIssue
from healthledger.lib.db import prepared_cursor
from records import blind_index, crypto, keys
from records.envelope import content_hash_key, head_mac, version_aad, version_seal
from records.fhir import canonical_json, index_terms, rewrite_references
from records.fhir.index import patient_references
from records.models import IndexToken, Patient, Resource, ResourceVersion

# Namespace of server ids derived from (patient, fullUrl): a re-import updates instead of duplicating.
RESOURCE_ID_NAMESPACE = uuid.UUID("5f0c2f39-8a53-4c1e-9d51-6b1f3a7e2c10")
QUERY_CHUNK = 900  # stays under every backend's bound-parameter limit


def reject(entry_index: int | None, code: str, diagnostics: str) -> InvalidFHIR:
    where = (f"Bundle.entry[{entry_index}]",) if entry_index is not None else ()
    return InvalidFHIR(diagnostics, found=[OutcomeIssue(code=code, diagnostics=diagnostics, expression=where)])


def urn_uuid(full_url: str | None) -> str | None:
    if full_url and full_url.startswith("urn:uuid:"):
        return full_url[len("urn:uuid:") :].lower()
    return None


@dataclass
class PatientWrites:
    """What one document did to one patient's record; ids read "Type/id"."""

    patient_id: uuid.UUID
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


@dataclass
class _Planned:
    entry: Any
    owner: Patient
    server_id: str


@dataclass(slots=True)
class _Row:
    """One version to write, as plain values (model instances cost more than the encryption)."""

    patient_id: uuid.UUID
    resource_type: str
    fhir_id: str
    version: int
    digest: bytes
    head: bytes
    ciphertext: bytes
    wrapped_data_key: bytes
    tokens: set[bytes]
    pk: int | None


def chunks(items: list[Any], size: int = QUERY_CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class IdMode(enum.Enum):
    """How entries get their server ids.

    IMPORT: an upload of a source (an export, a Bundle): ids derived from (owner, source,
    id in the source), so re-importing the same source updates instead of duplicating,
    and an id this server issued to the same record is that resource again.
    CREATE: the API's create: every POSTed entry gets a fresh id, whatever id it carries
    (FHIR: the server ignores a client's id on create); a PUT names an id this server issued.
    """

    IMPORT = "import"
    CREATE = "create"


@dataclass(frozen=True)
class Source:
    """Where a document came from: a label the uploader gives a provider ("" when none)."""

    label: str = ""


def _scoped_id(owner: Patient, source: Source, scope: str, local: str) -> str:
    return str(uuid.uuid5(RESOURCE_ID_NAMESPACE, f"{owner.id}|{source.label}|{scope}|{local}"))


def _source_key(source: Source, scope: str) -> str:
    return f"{source.label}|{scope}"[:255]


def _issued_to(owner: Patient, document: Any, mode: IdMode) -> set[tuple[str, str]]:
    """(type, id) of the entries naming a resource this server already issued to this record.

    Ids issued to another record never count: they are just strings from a source.
    """
    wanted = [e.source_id for e in document.entries if e.source_id and (mode is IdMode.IMPORT or e.method == "PUT")]
    issued: set[tuple[str, str]] = set()
    for part in chunks(wanted):
        issued.update(
            Resource.objects.filter(patient_id=owner.id, fhir_id__in=part).values_list("resource_type", "fhir_id")
        )
    return issued


def _patient_server_id(owner: Patient, source: Source, entry: Any, scope: str | None) -> str:
    """The server id of a Patient resource in an upload: the record's own id for its first source.

    A record holds one Patient resource per source. The first source's Patient takes the
    record's id (Patient/<fhir_id>, what clinicians search by); the others get ids of their
    own and a link to it. An export of this record names itself by the record's id.
    """
    if entry.source_id and entry.source_id == owner.fhir_id:
        return owner.fhir_id
    if scope is None:
        return owner.fhir_id if not owner.primary_source else str(uuid.uuid4())
    key = _source_key(source, scope)
    if not owner.primary_source:
        owner.primary_source = key
    if owner.primary_source == key:
        return owner.fhir_id
    return _scoped_id(owner, source, scope, scope)


def import_id(*, owner: Patient, resource: dict[str, Any], source: Source | None = None) -> str:
    """The server id an import gives `resource` (not a Patient, sent without fullUrl) when new to `owner`'s record.

    For a caller that names a resource before storing it, as a Provenance names its target by id and
    version: the same derivation as server_ids_assign's, whose result tells the caller whether it held.
    """
    scope = next((ref for ref in patient_references(resource) if ref.startswith("Patient/")), "")
    return _scoped_id(owner, source or Source(), scope, f"{resource['resourceType']}/{resource['id']}")


def server_ids_assign(
    document: Any, compartments: dict[int, str | None], owner: Patient, *, mode: IdMode, source: Source
) -> tuple[list[_Planned], dict[str, str]]:
    """Give every entry its server id in `owner`'s record, and map the source's references to them.

    Ids in a source never decide ownership: everything lands in `owner`'s record, under
    ids this server derives or draws. Returns the plan and the reference rewrites.
    """
    issued = _issued_to(owner, document, mode)
    planned: list[_Planned] = []
    seen: set[tuple[str, str]] = set()
    patients: dict[str, str] = {}  # the source's ways of naming each of its Patients -> server reference
    for entry in document.entries:
        if entry.method == "DELETE":
            raise reject(entry.index, "not-supported", "DELETE entries are not supported")
        scope = compartments.get(entry.index)
        if entry.resource_type == "Patient":
            if entry.source_id and ("Patient", entry.source_id) in issued:
                server_id = entry.source_id  # one of this record's own Patient resources, sent back
            else:
                server_id = _patient_server_id(owner, source, entry, scope)
            for alias in (entry.full_url, scope, entry.source_id and f"Patient/{entry.source_id}"):
                if alias:
                    patients.setdefault(alias, f"Patient/{server_id}")
        elif entry.source_id and (entry.resource_type, entry.source_id) in issued:
            server_id = entry.source_id
        elif mode is IdMode.IMPORT and (entry.full_url or entry.source_id):
            local = entry.full_url or f"{entry.resource_type}/{entry.source_id}"
            server_id = _scoped_id(owner, source, scope or "", local)
        else:
            server_id = str(uuid.uuid4())
        if (entry.resource_type, server_id) in seen:
            raise reject(entry.index, "duplicate", "two entries name the same resource")
        seen.add((entry.resource_type, server_id))
        planned.append(_Planned(entry=entry, owner=owner, server_id=server_id))
    if mode is IdMode.CREATE:
        _refuse_other_records(document, compartments, patients, owner)
    mapping = reference_map(planned)
    mapping.update(_outside_patients(compartments, patients, owner, source, mode, issued))
    return planned, mapping


def _refuse_other_records(
    document: Any, compartments: dict[int, str | None], inside: dict[str, str], owner: Patient
) -> None:
    """A create names its record by the record's server id; naming any other record is refused."""
    own = f"Patient/{owner.fhir_id}"
    for entry in document.entries:
        scope = compartments.get(entry.index)
        if scope and scope != own and scope not in inside and scope.startswith("Patient/"):
            raise reject(entry.index, "business-rule", "the resource belongs to another patient")


def _outside_patients(
    compartments: dict[int, str | None],
    inside: dict[str, str],
    owner: Patient,
    source: Source,
    mode: IdMode,
    issued: set[tuple[str, str]],
) -> dict[str, str]:
    """References to the source's Patient from entries that came without it (an ndjson line, a single resource).

    In an upload they name the uploader's Patient resource for that source; in a create the
    caller named the record by its server id already, which is left as it is.
    """
    rewrites = dict(inside)
    for scope in set(compartments.values()):
        if not scope or scope in rewrites or not scope.startswith("Patient/") or mode is IdMode.CREATE:
            continue
        if scope == f"Patient/{owner.fhir_id}" or ("Patient", scope.removeprefix("Patient/")) in issued:
            continue
        key = _source_key(source, scope)
        if not owner.primary_source or owner.primary_source == key:
            rewrites[scope] = f"Patient/{owner.fhir_id}"
        else:
            rewrites[scope] = f"Patient/{_scoped_id(owner, source, scope, scope)}"
    return rewrites


def reference_map(planned: list[_Planned]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in planned:
        target = f"{item.entry.resource_type}/{item.server_id}"
        if item.entry.full_url:
            mapping[item.entry.full_url] = target
        if item.entry.source_id and item.entry.source_id != item.server_id:
            mapping[f"{item.entry.resource_type}/{item.entry.source_id}"] = target
    return mapping


def existing_resources(planned: list[_Planned]) -> dict[tuple[str, str], tuple[int, uuid.UUID, int, bytes]]:
    """(type, id) -> (pk, patient id, current version, current hash) for every planned id already stored."""
    found: dict[tuple[str, str], tuple[int, uuid.UUID, int, bytes]] = {}
    for part in chunks([p.server_id for p in planned]):
        rows = Resource.objects.filter(fhir_id__in=part).values_list(
            "resource_type", "fhir_id", "pk", "patient_id", "current_version", "current_hash"
        )
        for resource_type, fhir_id, pk, patient_id, version, digest in rows:
            found[(resource_type, fhir_id)] = (pk, patient_id, version, bytes(digest))
    return found


def _with_version_meta(resource: dict[str, Any], version: int, at: datetime) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {**resource, "meta": meta}


def _without_version_meta(resource: dict[str, Any], server_id: str) -> dict[str, Any]:
    # The client's versionId/lastUpdated are the server's to set; they never count as a change.
    out = {**resource, "id": server_id}
    meta = out.get("meta")
    if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
        trimmed = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if trimmed:
            out["meta"] = trimmed
        else:
            del out["meta"]
    return out


SOURCE_TAG_SYSTEM = "urn:healthledger:source"


def source_tagged(resource: dict[str, Any], source: Source) -> dict[str, Any]:
    """The resource with a meta.tag naming the source it was imported from (the uploader's label).

    Inside the encrypted content, not a column: which providers a patient sees is health
    information too, and erasure must take it with the key. No label leaves the resource as
    it came (a record's own export, sent back, keeps the tags it carries).
    """
    if not source.label:
        return resource
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) or [] if not (isinstance(t, dict) and t.get("system") == SOURCE_TAG_SYSTEM)]
    meta["tag"] = [*tags, {"system": SOURCE_TAG_SYSTEM, "code": source.label[:64], "display": source.label}]
    return {**resource, "meta": meta}


def document_write(
    planned: list[_Planned],
    mapping: dict[str, str],
    source: Source | None = None,
    *,
    locked: dict[uuid.UUID, str] | None = None,
) -> dict[uuid.UUID, PatientWrites]:
    """Encrypt, version and index every planned entry and write it all in bulk; `mapping` rewrites references.

    `locked`: owners the caller locked and read in this transaction before planning (id -> their first
    source as read then); their rows are not read again.
    """
    source = source or Source()
    now = timezone.now()
    locked = locked or {}
    owners = {p.owner.id: p.owner for p in planned}
    stored_owners = [pid for pid, p in owners.items() if not p._state.adding and pid not in locked]
    # Locked (and re-read) so an erasure or a rotation committed meanwhile is seen, not overwritten.
    claimed = {pid for pid, p in owners.items() if p._state.adding or (pid in locked and not locked[pid])}
    for pid, wrapped, key_id, primary in (
        Patient.objects.select_for_update()
        .filter(pk__in=stored_owners)
        .values_list("pk", "wrapped_key", "master_key_id", "primary_source")
    ):
        if wrapped is None:
            raise KeyDestroyed("this patient's record was erased; nothing can be added to it")
        owners[pid].wrapped_key, owners[pid].master_key_id = wrapped, key_id
        if not primary:
            claimed.add(pid)
    _patients_save([owners[pid] for pid in claimed])
    existing = existing_resources(planned)
    patient_keys = {
        pid: keys.patient_key_unwrap(patient_id=pid, wrapped=bytes(p.wrapped_key or b""), master_key_id=p.master_key_id)
        for pid, p in owners.items()
    }
    hash_keys = {pid: crypto.KeyedDigester(content_hash_key(key)) for pid, key in patient_keys.items()}
    writes = {pid: PatientWrites(patient_id=pid) for pid in owners}

    rows: list[_Row] = []
    for item in planned:
        entry, owner, server_id = item.entry, item.owner, item.server_id
        name = f"{entry.resource_type}/{server_id}"
        stored = existing.get((entry.resource_type, server_id))
        if stored is not None and stored[1] != owner.id:
            raise reject(entry.index, "conflict", "the resource id is held in another record")
        content = source_tagged(_without_version_meta(rewrite_references(entry.resource, mapping), server_id), source)
        if entry.resource_type == "Patient" and server_id != owner.fhir_id:
            content = _linked_to(content, owner)
        digest = hash_keys[owner.id](canonical_json(content))
        if stored is not None and stored[3] == digest:
            writes[owner.id].unchanged.append(name)
            continue
        version = stored[2] + 1 if stored is not None else 1
        plaintext = canonical_json(_with_version_meta(content, version, now))
        aad = version_aad(patient_id=owner.id, resource_type=entry.resource_type, fhir_id=server_id, version=version)
        ciphertext, wrapped = version_seal(patient_key=patient_keys[owner.id], aad=aad, plaintext=plaintext)
        terms = index_terms(content)
        found = blind_index.resource_tokens(
            patient_id=owner.id, codes=terms.codes, categories=terms.categories, dates=terms.dates, terms=terms.terms
        )
        rows.append(
            _Row(
                owner.id,
                entry.resource_type,
                server_id,
                version,
                digest,
                head_mac(patient_key=patient_keys[owner.id], aad=aad),
                ciphertext,
                wrapped,
                found,
                stored[0] if stored is not None else None,
            )
        )
        (writes[owner.id].created if stored is None else writes[owner.id].updated).append(f"{name}/_history/{version}")

    updated = [
        Resource(pk=row.pk, current_version=row.version, current_hash=row.digest, head_mac=row.head, updated_at=now)
        for row in rows
        if row.pk is not None
    ]
    at = connection.ops.adapt_datetimefield_value(now)
    _resources_insert([row for row in rows if row.pk is None], at=at)
    if updated:
        Resource.objects.bulk_update(
            updated, ["current_version", "current_hash", "head_mac", "updated_at"], batch_size=500
        )
        for part in chunks([r.pk for r in updated]):
            IndexToken.objects.filter(resource_id__in=part).delete()
    _rows_insert(
        ResourceVersion,
        ("resource", "version", "ciphertext", "wrapped_data_key", "content_hash", "created_at"),
        ((row.pk, row.version, row.ciphertext, row.wrapped_data_key, row.digest, at) for row in rows),
    )
    _rows_insert(IndexToken, ("resource", "token"), ((row.pk, token) for row in rows for token in row.tokens))
    return writes


def _linked_to(patient: dict[str, Any], owner: Patient) -> dict[str, Any]:
    """A further source's Patient resource, linked to the record's own (FHIR Patient.link, "seealso")."""
    target = f"Patient/{owner.fhir_id}"
    links = [link for link in patient.get("link") or [] if isinstance(link, dict)]
    if any((link.get("other") or {}).get("reference") == target for link in links):
        return patient
    return {**patient, "link": [*links, {"other": {"reference": target}, "type": "seealso"}]}


def _patients_save(owners: list[Patient]) -> None:
    """Remember which source's Patient resource is the record's own, the first time one arrives.

    Only `owners` whose stored row has none yet: once set it never changes, so a write into a record
    that has one (every later upload, every diagnostic result) issues no UPDATE at all.
    """
    for patient in owners:
        if patient.primary_source:
            Patient.objects.filter(pk=patient.pk, primary_source="").update(primary_source=patient.primary_source)


def _resources_insert(rows: list[_Row], *, at: Any) -> None:
    """Insert the resource rows of new resources and learn their primary keys.

    A few rows (a diagnostic job's outputs, a single create) on PostgreSQL: one INSERT ... RETURNING.
    Otherwise COPY, then one select per chunk for the keys.
    """
    uuid_field = Patient._meta.pk
    assert uuid_field is not None
    patient_ids = {row.patient_id: uuid_field.get_db_prep_value(row.patient_id, connection) for row in rows}
    values = [(patient_ids[r.patient_id], r.resource_type, r.fhir_id, r.version, r.digest, r.head, at) for r in rows]
    fields = ("patient", "resource_type", "fhir_id", "current_version", "current_hash", "head_mac", "updated_at")
    by_identity = {(row.fhir_id, row.resource_type): row for row in rows}
    if _few(values):
        for pk, fhir_id, resource_type in _unnest_insert(
            Resource, fields, values, returning=("id", "fhir_id", "resource_type")
        ):
            by_identity[(fhir_id, resource_type)].pk = pk
        return
    _rows_insert(Resource, fields, values)
    for part in chunks([row.fhir_id for row in rows]):
        found = Resource.objects.filter(fhir_id__in=part).values_list("pk", "fhir_id", "resource_type")
        for pk, fhir_id, resource_type in found:
            row = by_identity.get((fhir_id, resource_type))
            if row is not None:
                row.pk = pk


def _column(field: object) -> str:
    assert isinstance(field, models.Field)
    return str(field.column)


def _internal_type(field: object) -> str:
    assert isinstance(field, models.Field)
    if isinstance(field, models.ForeignKey):
        return str(field.target_field.get_internal_type())
    return str(field.get_internal_type())


_PG_COPY_TYPES = {
    "BigAutoField": "int8",
    "PositiveIntegerField": "int4",
    "BinaryField": "bytea",
    "CharField": "text",
    "DateTimeField": "timestamptz",
    "UUIDField": "uuid",
}


# Up to this many rows, PostgreSQL gets one INSERT ... SELECT FROM unnest(...): one round trip, where COPY
# takes two (the COPY, then its data) and cannot return the keys. Past it, COPY's streaming wins.
FEW_ROWS = 64


def _few(rows: list[tuple[Any, ...]]) -> bool:
    return connection.vendor == "postgresql" and 0 < len(rows) <= FEW_ROWS


def _unnest_insert(
    model: type[models.Model], fields: tuple[str, ...], rows: list[tuple[Any, ...]], *, returning: tuple[str, ...] = ()
) -> list[tuple[Any, ...]]:
    """INSERT a few rows as one array per column (one fixed statement per table, prepared); the RETURNING rows."""
    meta = model._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(_column(meta.get_field(name))) for name in fields)
    arrays = ", ".join(f"%s::{_PG_COPY_TYPES[_internal_type(meta.get_field(name))]}[]" for name in fields)
    back = f" RETURNING {', '.join(quote(name) for name in returning)}" if returning else ""
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT * FROM unnest({arrays}){back}"  # noqa: S608 (model names)
    with prepared_cursor() as cursor:
        cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
        return list(cursor.fetchall()) if returning else []


def _rows_insert(model: type[models.Model], fields: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert many rows of plain values (bytes, ints, adapted datetimes) as cheaply as the backend allows.

    Ingest writes tens of thousands of version and token rows; building model
    instances for bulk_create costs more than the encryption. SQLite runs in
    process, so executemany of one prepared statement is cheapest there;
    PostgreSQL gets COPY, one stream for all rows (a few rows: _unnest_insert).
    """
    rows = list(rows)
    if not rows:
        return
    if _few(rows):
        _unnest_insert(model, fields, rows)
        return
    meta = model._meta
    columns = ", ".join(connection.ops.quote_name(_column(meta.get_field(name))) for name in fields)
    table = connection.ops.quote_name(meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Binary COPY: ciphertext goes over the wire as is, not hex-escaped.
            types = [_PG_COPY_TYPES[_internal_type(meta.get_field(name))] for name in fields]
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
            return
        placeholders = ", ".join(["%s"] * len(fields))
        sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608 (names come from the model)
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 5000:
                cursor.executemany(sql, batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
