"""Planning and writing one parsed FHIR document: owners, server ids, versions, tokens.

Called by records.services.fhir_ingest inside its transaction. The whole document
is planned first (every reject raised before the first write), then written with
a handful of bulk statements: no per-resource queries.

A package by concern: ids (which record and server id each entry gets), rows (bulk inserts), and here
the write itself (versions, encryption, tokens). Callers import from here; every name is re-exported.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from healthledger.errors import KeyDestroyed
from records import blind_index, crypto, keys
from records.envelope import content_hash_key, head_mac, version_aad, version_seal
from records.fhir import canonical_json, index_terms, rewrite_references
from records.ingest.ids import (
    RESOURCE_ID_NAMESPACE,
    IdMode,
    Source,
    _Planned,
    import_id,
    reference_map,
    reject,
    server_ids_assign,
    urn_uuid,
)
from records.ingest.rows import QUERY_CHUNK, _resources_insert, _Row, _rows_insert, chunks
from records.models import IndexToken, Patient, Resource, ResourceVersion

__all__ = [
    "QUERY_CHUNK",
    "RESOURCE_ID_NAMESPACE",
    "SOURCE_TAG_SYSTEM",
    "IdMode",
    "PatientWrites",
    "Source",
    "chunks",
    "document_write",
    "existing_resources",
    "import_id",
    "reference_map",
    "reject",
    "server_ids_assign",
    "source_tagged",
    "urn_uuid",
]


@dataclass
class PatientWrites:
    """What one document did to one patient's record; ids read "Type/id"."""

    patient_id: uuid.UUID
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


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
        Resource(
            pk=row.pk, current_version=row.version, current_hash=row.digest, head_mac=row.head,
            current_ciphertext=row.ciphertext, current_wrapped_data_key=row.wrapped_data_key, updated_at=now,
        )
        for row in rows
        if row.pk is not None
    ]  # fmt: skip
    at = connection.ops.adapt_datetimefield_value(now)
    _resources_insert([row for row in rows if row.pk is None], at=at)
    if updated:
        copied = ["current_ciphertext", "current_wrapped_data_key"]  # the copy moves on with the version
        Resource.objects.bulk_update(
            updated, ["current_version", "current_hash", "head_mac", *copied, "updated_at"], batch_size=500
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
