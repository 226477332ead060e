"""Planning a document's writes: which record each entry lands in and the server id it gets there.

Ids in a source never decide ownership: an import derives ids from (owner, source, id in the source), so
re-importing a source updates instead of duplicating; a create draws fresh ones.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any

from healthledger.errors import InvalidFHIR, OutcomeIssue
from records.fhir.index import patient_references
from records.ingest.rows import chunks
from records.models import Patient, Resource

# Namespace of server ids derived from (patient, fullUrl): a re-import updates instead of duplicating.
RESOURCE_ID_NAMESPACE = uuid.UUID("5f0c2f39-8a53-4c1e-9d51-6b1f3a7e2c10")


def reject(entry_index: int | None, code: str, diagnostics: str) -> InvalidFHIR:
    where = (f"Bundle.entry[{entry_index}]",) if entry_index is not None else ()
    return InvalidFHIR(diagnostics, found=[OutcomeIssue(code=code, diagnostics=diagnostics, expression=where)])


def urn_uuid(full_url: str | None) -> str | None:
    if full_url and full_url.startswith("urn:uuid:"):
        return full_url[len("urn:uuid:") :].lower()
    return None


@dataclass
class _Planned:
    entry: Any
    owner: Patient
    server_id: str


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
