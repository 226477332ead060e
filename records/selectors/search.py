"""Blind-index search: the criteria of a search and the resources of one record that match them, never decrypting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Exists, OuterRef, QuerySet

from records import blind_index
from records.models import IndexToken, Patient, Resource

SEARCH_LIMIT_MAX = 1000


def _category_tokens(patient: Patient, categories: Sequence[str]) -> list[bytes]:
    return [blind_index.token(patient_id=patient.pk, kind="category", value=c) for c in categories]


def resource_in_categories(
    *, patient: Patient, resource_type: str, resource_id: str, categories: Sequence[str]
) -> bool:
    """Whether the resource is indexed under any of the categories ("system|code"), without decrypting."""
    return IndexToken.objects.filter(
        resource__patient_id=patient.pk,
        resource__resource_type=resource_type,
        resource__fhir_id=resource_id,
        token__in=_category_tokens(patient, categories),
    ).exists()


def _has_token(tokens: list[bytes]) -> Exists:
    return Exists(IndexToken.objects.filter(resource_id=OuterRef("pk"), token__in=tokens))


@dataclass(frozen=True)
class SearchCriteria:
    """The filters of one search, all optional and all applied together (AND).

    `codes` and `categories` are groups of "system|code" alternatives: a resource matches a
    group when it carries any of them. Dates are inclusive calendar days (the blind index's
    buckets); `updated_ge`/`updated_lt` are a half-open range of Resource.updated_at.
    """

    ids: tuple[str, ...] = ()
    codes: tuple[tuple[str, ...], ...] = ()
    categories: tuple[tuple[str, ...], ...] = ()
    date_ge: date | None = None
    date_le: date | None = None
    updated_ge: datetime | None = None
    updated_lt: datetime | None = None
    # Groups of "<parameter>=<value>" term alternatives (status, gender, identifier, name ...), ANDed.
    terms: tuple[tuple[str, ...], ...] = ()
    # Excluded (ne): inclusive ranges of days, and half-open ranges of update instants (None: open above).
    date_not: tuple[tuple[date, date], ...] = ()
    updated_not: tuple[tuple[datetime, datetime | None], ...] = ()
    # Groups of term alternatives a match must carry none of (value-quantity ne), each group on its own.
    terms_not: tuple[tuple[str, ...], ...] = ()


def resource_matching(
    *, patient: Patient, resource_type: str | None, criteria: SearchCriteria, categories_any: Sequence[str] = ()
) -> QuerySet[Resource]:
    """Every resource of the patient matching the criteria (and, when given, one of `categories_any`):
    unordered, unsliced, through blind-index tokens only."""
    found = Resource.objects.filter(patient_id=patient.pk)
    if resource_type:
        found = found.filter(resource_type=resource_type)
    if criteria.ids:
        found = found.filter(fhir_id__in=criteria.ids)
    groups = [("code", group) for group in criteria.codes] + [("category", g) for g in criteria.categories]
    groups += [("term", group) for group in criteria.terms]
    if categories_any:
        # A grant narrowed to categories: the resource must carry at least one of them.
        groups.append(("category", tuple(categories_any)))
    for kind, group in groups:
        found = found.filter(_has_token([blind_index.token(patient_id=patient.pk, kind=kind, value=v) for v in group]))
    if criteria.date_ge is not None or criteria.date_le is not None:
        if criteria.date_ge is not None and criteria.date_le is not None and criteria.date_ge > criteria.date_le:
            return found.none()
        found = found.filter(
            _has_token(
                blind_index.date_range_tokens(patient_id=patient.pk, date_ge=criteria.date_ge, date_le=criteria.date_le)
            )
        )
    for group in criteria.terms_not:
        tokens = [blind_index.token(patient_id=patient.pk, kind="term", value=v) for v in group]
        found = found.filter(~_has_token(tokens))
    for first, last in criteria.date_not:
        found = found.filter(
            ~_has_token(blind_index.date_range_tokens(patient_id=patient.pk, date_ge=first, date_le=last))
        )
    for start, end in criteria.updated_not:
        found = found.exclude(updated_at__gte=start, **({"updated_at__lt": end} if end is not None else {}))
    if criteria.updated_ge is not None:
        found = found.filter(updated_at__gte=criteria.updated_ge)
    if criteria.updated_lt is not None:
        found = found.filter(updated_at__lt=criteria.updated_lt)
    return found


def resource_search(
    *,
    patient: Patient,
    resource_type: str | None = None,
    code: str | None = None,
    category: str | None = None,
    date_ge: date | None = None,
    date_le: date | None = None,
    categories_any: Sequence[str] = (),
    limit: int = 100,
    offset: int = 0,
) -> QuerySet[Resource]:
    """The patient's resources matching every given criterion, through blind-index tokens only.

    `code` and `category` are "system|code"; a date criterion matches a resource
    with any indexed date in [date_ge, date_le]. Ordered by storage order.
    """
    criteria = SearchCriteria(
        codes=((code,),) if code else (),
        categories=((category,),) if category else (),
        date_ge=date_ge,
        date_le=date_le,
    )
    found = resource_matching(
        patient=patient, resource_type=resource_type, criteria=criteria, categories_any=categories_any
    )
    limit = max(0, min(limit, SEARCH_LIMIT_MAX))
    offset = max(0, offset)
    return found.order_by("pk")[offset : offset + limit]
