"""The search parameters of each record type, declared once (see records.fhir.search_parameters.registry)."""

from __future__ import annotations

from records.fhir.search_parameters.registry import (
    COMMON,
    ELEMENTS,
    HL7,
    LOCAL,
    MODIFIERS,
    OWN_CODE_TERM,
    PREFIX_MAX,
    TERMS,
    SearchParameter,
    Term,
    TermQuery,
    elements_read,
    reference_elements,
    reference_key,
    search_parameter_by_id,
    search_parameters,
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
