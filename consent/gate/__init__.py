"""THE GATE: the only path from stored ciphertext to plaintext.

Every read of patient data, by the patient, a clinician, a worker or a research run,
comes through here: the policy decision point decides; the decision, permit or deny,
is appended to the access log (a permit in the same transaction as the read, a deny
in a transaction of its own that commits before the caller answers); only a permit
decrypts. A deny looks exactly like a missing resource.

A package by concern: who asks (caller), deciding and logging (decisions), decrypting
(opening), bulk export files (exports), single reads (reads), searches (search), whole-record reads (whole_record),
access-log text (text), and the server-held signing key of a legacy record (patient_key: only
"take your key" may open it, imported directly). Only its modules
import records.decrypt (an import-linter contract says so); callers import from here.
"""

from __future__ import annotations

from consent.gate.caller import Caller, DeferredCaller
from consent.gate.cohort import CohortQuery, CohortRecord, cohort_read
from consent.gate.exports import (
    ExportFile,
    ExportSegmentSealer,
    SealedSegment,
    export_file_open,
    export_patients_covered,
    export_segment_sealer,
)
from consent.gate.job_inputs import JobInputs, TypeSearch, job_inputs_read
from consent.gate.reads import ReadResult, resource_read, resource_read_by_id
from consent.gate.search import SearchPage, SearchTarget, resource_search, resource_search_counted, search_target
from consent.gate.text import access_log_text
from consent.gate.whole_record import record_export, record_index_rebuild
from records.selectors import SearchCriteria

__all__ = [
    "Caller",
    "CohortQuery",
    "CohortRecord",
    "DeferredCaller",
    "ExportFile",
    "ExportSegmentSealer",
    "JobInputs",
    "ReadResult",
    "SealedSegment",
    "SearchCriteria",
    "SearchPage",
    "SearchTarget",
    "TypeSearch",
    "access_log_text",
    "cohort_read",
    "export_file_open",
    "export_patients_covered",
    "export_segment_sealer",
    "job_inputs_read",
    "record_export",
    "record_index_rebuild",
    "resource_read",
    "resource_read_by_id",
    "resource_search",
    "resource_search_counted",
    "search_target",
]
