"""FHIR search parameters: prefixes, dates, tokens, paging; every problem is a 400 naming the parameter.

A package by concern: what every search checks first and what it ignores (checks), date and
instant ranges (dates), tokens, ids and the patient named (values), _count, _offset, _summary and
_sort (pages), _elements and _summary's cut-down resources (subsetting). A control character in
any parameter is a 400. Callers import from here.
"""

from __future__ import annotations

from api.fhir.params.checks import IGNORED, PAGING, bad, strict, unknown_check
from api.fhir.params.dates import (
    APPROXIMATE_SHARE,
    PREFIXES,
    DayRange,
    InstantRange,
    day_range,
    instant_range,
)
from api.fhir.params.pages import COUNT_DEFAULT, COUNT_MAX, SUMMARIES, Paging, paging
from api.fhir.params.subsetting import SUBSETTED, elements, subset, summarized
from api.fhir.params.values import id_list, patient_param, token_groups

__all__ = [
    "APPROXIMATE_SHARE",
    "COUNT_DEFAULT",
    "COUNT_MAX",
    "IGNORED",
    "PAGING",
    "PREFIXES",
    "SUBSETTED",
    "SUMMARIES",
    "DayRange",
    "InstantRange",
    "Paging",
    "bad",
    "day_range",
    "elements",
    "id_list",
    "instant_range",
    "paging",
    "patient_param",
    "strict",
    "subset",
    "summarized",
    "token_groups",
    "unknown_check",
]
