"""Reads of the record store that never decrypt: row lookups and blind-index search.

What comes back is ciphertext and identities. Turning a StoredVersion into
plaintext is records.decrypt's job, and only the consent gate may call it.

One module per concern:
- `stored`: sealed versions by row, StoredVersion;
- `located`: a row found by type and id alone (the API read path);
- `resources`: plain row lookups;
- `search`: blind-index search criteria and matching;
- `sorting`: ordering matches (columns, clinical date);
- `pages`: one page of a search as sealed versions, with the count;
- `target_page`: a search's record and its page of a whole type, in one statement;
- `cohort`: several records at once (research chunks).

Callers import from `records.selectors`; every public name is re-exported here.
"""

from __future__ import annotations

from records.selectors.cohort import stored_matching_of_patients, stored_patient_resources
from records.selectors.located import LocatedVersion, RowExtra, patient_locate_by_fhir_id, stored_version_locate
from records.selectors.pages import resource_search_stored, stored_page, stored_page_of_type
from records.selectors.resources import patient_for_user, resource_get, resource_versions
from records.selectors.search import (
    SEARCH_LIMIT_MAX,
    SearchCriteria,
    resource_in_categories,
    resource_matching,
    resource_search,
)
from records.selectors.sorting import (
    COLUMN_SORTS,
    SORT_KEYS,
    resource_ids_by_column,
    resource_ids_by_date,
    resource_ids_sorted,
)
from records.selectors.stored import StoredVersion, stored_version_get, stored_versions_by_ids, stored_versions_current
from records.selectors.target_page import TypePage, patient_locate_with_type_page

__all__ = [
    "COLUMN_SORTS",
    "SEARCH_LIMIT_MAX",
    "SORT_KEYS",
    "LocatedVersion",
    "RowExtra",
    "SearchCriteria",
    "StoredVersion",
    "TypePage",
    "patient_for_user",
    "patient_locate_by_fhir_id",
    "patient_locate_with_type_page",
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
