"""Reads the portal composes for its pages. Patient data only ever comes through consent.gate.

Rows that are not health data (grants, access-log entries, user names) are read
from their own apps' models and selectors; every FHIR body is a gate read, so each
page a patient opens is itself in their access log.

One module per concern; every name the views use is here as before."""

from __future__ import annotations

from portal.selectors.access import (
    ACTION_WORDS,
    BURST_GAP,
    PLURAL_WORDS,
    AccessRow,
    ChainSnapshot,
    access_entry_get,
    access_row,
    access_rows,
    bursts_grouped,
    chain_snapshot,
    entry_proof,
)
from portal.selectors.ai import (
    RESULTS_SHOWN,
    AiJob,
    AiResult,
    ModelCard,
    ai_jobs,
    model_card,
    risk_assessment_in_words,
)
from portal.selectors.clinicians import (
    ERASED_RECORD,
    SharedPatient,
    clinician_listing,
    shared_patient_get,
    shared_with,
)
from portal.selectors.dashboard import (
    EXPIRING_SOON,
    Dashboard,
    dashboard,
)
from portal.selectors.erasure import (
    ErasureSummary,
    erasure_summary,
)
from portal.selectors.grants import (
    CATEGORY_WORDS,
    LIVE_STATUSES,
    GrantRow,
    grant_row,
    patient_grant_get,
    patient_grants,
    scope_words,
)
from portal.selectors.people import (
    DIRECTORY_PAGE,
    DirectoryEntry,
    clinician_directory_get,
    clinician_directory_search,
    clinicians_directory,
    directory_entry,
    person_name,
)
from portal.selectors.record import (
    ACTIVE_CONDITION,
    DUE_FORECASTS,
    Health,
    Latest,
    TimelineItem,
    health_summary,
    metric_chart,
    metric_charts,
    record_counts,
    record_sources,
    timeline,
)

__all__ = [
    "ACTION_WORDS",
    "ACTIVE_CONDITION",
    "BURST_GAP",
    "CATEGORY_WORDS",
    "DIRECTORY_PAGE",
    "DUE_FORECASTS",
    "ERASED_RECORD",
    "EXPIRING_SOON",
    "LIVE_STATUSES",
    "PLURAL_WORDS",
    "RESULTS_SHOWN",
    "AccessRow",
    "AiJob",
    "AiResult",
    "ChainSnapshot",
    "Dashboard",
    "DirectoryEntry",
    "ErasureSummary",
    "GrantRow",
    "Health",
    "Latest",
    "ModelCard",
    "SharedPatient",
    "TimelineItem",
    "access_entry_get",
    "access_row",
    "access_rows",
    "ai_jobs",
    "bursts_grouped",
    "chain_snapshot",
    "clinician_directory_get",
    "clinician_directory_search",
    "clinician_listing",
    "clinicians_directory",
    "dashboard",
    "directory_entry",
    "entry_proof",
    "erasure_summary",
    "grant_row",
    "health_summary",
    "metric_chart",
    "metric_charts",
    "model_card",
    "patient_grant_get",
    "patient_grants",
    "person_name",
    "record_counts",
    "record_sources",
    "risk_assessment_in_words",
    "scope_words",
    "shared_patient_get",
    "shared_with",
    "timeline",
]
