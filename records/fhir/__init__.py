"""FHIR intake: pure functions, no database.

parse_document checks a submitted document completely (R4B models plus what they
let through); the store then rewrites references, serializes canonically, indexes
and encrypts. Validation happens here, on write, and never on read.
"""

from __future__ import annotations

from records.fhir.document import Document, Entry, parse_document
from records.fhir.index import IndexTerms, index_terms, patient_compartment
from records.fhir.references import canonical_json, rewrite_references
from records.fhir.validation import validate_resource

__all__ = [
    "Document",
    "Entry",
    "IndexTerms",
    "canonical_json",
    "index_terms",
    "parse_document",
    "patient_compartment",
    "rewrite_references",
    "validate_resource",
]
