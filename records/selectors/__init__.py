"""Reads of the record store that never decrypt: row lookups and blind-index search.

What comes back is ciphertext and identities. Turning a StoredVersion into
plaintext is records.decrypt's job, and only the consent gate may call it.
"""

from __future__ import annotations

from records.selectors.stored import (
    COLUMN_SORTS,
    SEARCH_LIMIT_MAX,
    SORT_KEYS,
    LocatedVersion,
    RowExtra,
    SearchCriteria,
    StoredVersion,
    patient_for_user,
    patient_locate_by_fhir_id,
    resource_get,
    resource_ids_by_column,
    resource_ids_by_date,
    resource_ids_sorted,
    resource_in_categories,
    resource_matching,
    resource_search,
    resource_search_stored,
    resource_versions,
    stored_matching_of_patients,
    stored_page,
    stored_page_of_type,
    stored_patient_resources,
    stored_version_get,
    stored_version_locate,
    stored_versions_by_ids,
    stored_versions_current,
)

__all__ = [
    "COLUMN_SORTS",
    "SEARCH_LIMIT_MAX",
    "SORT_KEYS",
    "LocatedVersion",
    "RowExtra",
    "SearchCriteria",
    "StoredVersion",
    "patient_for_user",
    "patient_locate_by_fhir_id",
    "resource_get",
    "resource_ids_by_column",
    "resource_ids_by_date",
    "resource_ids_sorted",
    "resource_in_categories",
    "resource_matching",
    "resource_search",
    "resource_search_stored",
    "resource_versions",
    "stored_matching_of_patients",
    "stored_page",
    "stored_page_of_type",
    "stored_patient_resources",
    "stored_version_get",
    "stored_version_locate",
    "stored_versions_by_ids",
    "stored_versions_current",
]
