"""FHIR Bulk Data export (IG v2) as a service: accept, run in chunks, cancel, expire, and never lose one.

Accepting writes the ExportJob row, which is its own dispatch outbox: on commit one bounded attempt
publishes `api.tasks.bulk_export_run`; the beat task (`bulk_export_housekeeping`) publishes an open
export that is still owed to the broker or has not moved for EXPORT_STALE_SECONDS (a lost message, a
killed worker), and deletes exports past their expiry. Task arguments are export ids only.

The worker runs the export in chunks of EXPORT_CHUNK resources: each chunk is one read through the
gate (consent.gate.resource_search_counted: decided, logged with the export's id as the job, in the
chunk's transaction), sealed under the patient's key (consent.gate.export_segment_sealer) and stored with the
worker's new position, all in one transaction under the export's row lock; so a redelivered
message resumes at the last committed chunk, and memory stays one chunk whatever the export's size.
Each chunk is decided afresh: a grant revoked mid-export denies the next chunk, and the rest of that
patient's export stops (named in the manifest's error file); the other patients carry on.
A download decides each patient in the file again (consent.gate.export_file_open) and logs it.

A package by concern: `_typeFilter` and `_since` (filters), accepting, publishing, cancelling and
expiring (lifecycle), the chunks (worker) and the files served (files). Tests and benches tune a
module's own constants and seams (`worker.EXPORT_CHUNK`, `lifecycle.export_publish`).
"""

from __future__ import annotations

from api.bulk_export.files import OutputFile, export_file_lines, export_outputs
from api.bulk_export.filters import TypeFilter, type_filter_parse
from api.bulk_export.lifecycle import (
    EXPORT_OPEN_MAX,
    EXPORT_STALE_SECONDS,
    export_accept,
    export_cancel,
    export_cohort,
    export_fail,
    export_open_count,
    export_publish,
    export_ttl,
    exports_housekeeping,
)
from api.bulk_export.worker import EXPORT_CHUNK, EXPORT_STEP_SECONDS, export_step

__all__ = [
    "EXPORT_CHUNK",
    "EXPORT_OPEN_MAX",
    "EXPORT_STALE_SECONDS",
    "EXPORT_STEP_SECONDS",
    "OutputFile",
    "TypeFilter",
    "export_accept",
    "export_cancel",
    "export_cohort",
    "export_fail",
    "export_file_lines",
    "export_open_count",
    "export_outputs",
    "export_publish",
    "export_step",
    "export_ttl",
    "exports_housekeeping",
    "type_filter_parse",
]
