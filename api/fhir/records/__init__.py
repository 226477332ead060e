"""Read, vread, search and create of record resources; the patient's transaction import.

Every read goes through the gate (consent.gate) and every write through consent.writes.
A resource the caller may not see answers exactly like one that does not exist: the same
404 and the same OperationOutcome bytes; a search of a patient the caller may not see
answers exactly like a search of a patient that does not exist: an empty searchset.

Patient resolution in searches: `patient=<id>` (or `subject=Patient/<id>`); a patient user
defaults to their own record; anyone else must name the patient (400 otherwise), so no
search ever spans records.

The package, by concern: base (record types, serving a version), read, search, includes, write.
Callers (urls, capability, patch, everything, bulk export) import from here.
"""

from __future__ import annotations

from api.fhir.records.base import MAX_QUERY_LOGGED, RECORD_TYPES, _served
from api.fhir.records.read import resource_history, resource_read, resource_vread
from api.fhir.records.search import (
    _criteria,
    compartment_search,
    resource_search,
    resource_search_post,
    supported_parameters,
)
from api.fhir.records.write import _body_bytes, _representation, _write, resource_create, resource_update, transaction

__all__ = [
    "MAX_QUERY_LOGGED",
    "RECORD_TYPES",
    "_body_bytes",
    "_criteria",
    "_representation",
    "_served",
    "_write",
    "compartment_search",
    "resource_create",
    "resource_history",
    "resource_read",
    "resource_search",
    "resource_search_post",
    "resource_update",
    "resource_vread",
    "supported_parameters",
    "transaction",
]
