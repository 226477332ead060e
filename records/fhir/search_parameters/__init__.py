"""The search parameters of each record type, declared once: the parser, the CapabilityStatement and the docs follow.

- `registry`: the declarations (SearchParameter, the term table, search_parameters(type), by id, _include paths);
- `terms`: the "term" tokens of the blind index, extracted from a resource (search_terms) and asked for by a
  query value (term_query, term_query_full).

Callers import from `records.fhir.search_parameters`; every public name is re-exported here.
"""

from __future__ import annotations

from records.fhir.search_parameters.registry import (
    COMMON,
    ELEMENTS,
    HL7,
    LOCAL,
    MODIFIERS,
    OWN_CODE_TERM,
    TERMS,
    SearchParameter,
    Term,
    elements_read,
    reference_elements,
    search_parameter_by_id,
    search_parameters,
)
from records.fhir.search_parameters.terms import (
    PREFIX_MAX,
    TermQuery,
    reference_key,
    search_terms,
    term_query,
    term_query_full,
)

__all__ = [
    "COMMON",
    "ELEMENTS",
    "HL7",
    "LOCAL",
    "MODIFIERS",
    "OWN_CODE_TERM",
    "PREFIX_MAX",
    "TERMS",
    "SearchParameter",
    "Term",
    "TermQuery",
    "elements_read",
    "reference_elements",
    "reference_key",
    "search_parameter_by_id",
    "search_parameters",
    "search_terms",
    "term_query",
    "term_query_full",
]
