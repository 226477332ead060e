"""Conditions and medications: the latest one a value set (or an exact code list) holds, as of the score date."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from diagnostics.inference.values.core import (
    ACTIVE_CONDITION_STATUSES,
    EXCLUDED_VERIFICATION_STATUSES,
    Reading,
    Resource,
    codings,
    first_match,
    parse_day,
    reference,
)
from diagnostics.inference.valueset import Match

Matcher = Callable[[Any], "Match | None"]


def _condition_dates(resource: Resource) -> tuple[date | None, date | None]:
    began = parse_day(resource.get("onsetDateTime")) or parse_day(resource.get("recordedDate"))
    return began, parse_day(resource.get("abatementDateTime"))


def _refuted(resource: Resource) -> bool:
    verification = {c.get("code") for c in codings(resource.get("verificationStatus"))}
    return bool(verification & EXCLUDED_VERIFICATION_STATUSES)


def matching_condition(
    resources: Sequence[Resource], *, match: Matcher, as_of: date, history: bool = False
) -> Reading | None:
    """The latest Condition the value set holds that had begun by `as_of`, if any.

    Active ones only (clinicalStatus active, recurrence, relapse, not abated by `as_of`), unless
    `history`: a past myocardial infarction or stroke is recorded resolved or inactive by Synthea
    and most EHRs, and it is still history. Refuted, entered-in-error or unconfirmed entries never count.
    """
    found: Reading | None = None
    for resource in resources:
        if type(resource) is not dict or resource.get("resourceType") != "Condition":
            continue
        matched = match(resource.get("code"))
        if matched is None or _refuted(resource):
            continue
        began, ended = _condition_dates(resource)
        if began is not None and began > as_of:
            continue
        if not history:
            clinical = {c.get("code") for c in codings(resource.get("clinicalStatus"))}
            if not clinical & ACTIVE_CONDITION_STATUSES or (ended is not None and ended <= as_of):
                continue
        reading = Reading(value=matched.display, day=began or as_of, source=reference(resource), code=matched.token)
        if found is None or reading.day > found.day:
            found = reading
    return found


def matching_medication(resources: Sequence[Resource], *, match: Matcher, as_of: date) -> Reading | None:
    """An active MedicationRequest (order or plan) the value set holds, written by `as_of`, if any."""
    found: Reading | None = None
    for resource in resources:
        if type(resource) is not dict or resource.get("resourceType") != "MedicationRequest":
            continue
        if resource.get("status") != "active" or resource.get("doNotPerform") is True:
            continue
        matched = match(resource.get("medicationCodeableConcept"))
        if matched is None:
            continue
        authored = parse_day(resource.get("authoredOn"))
        if authored is not None and authored > as_of:
            continue
        name = f"{matched.display} ({matched.klass})" if matched.klass else matched.display
        reading = Reading(value=name, day=authored or as_of, source=reference(resource), code=matched.token)
        if found is None or reading.day > found.day:
            found = reading
    return found


def code_matcher(codes: Sequence[str]) -> Matcher:
    """A matcher for an exact list of "system|code" tokens."""
    wanted = set(codes)

    def match(concept: Any) -> Match | None:
        token = first_match(concept, wanted)
        return None if token is None else Match(token, token.rsplit("|", 1)[-1])

    return match


def active_condition(resources: Sequence[Resource], *, codes: Sequence[str], as_of: date) -> Reading | None:
    """An active, not refuted Condition with one of `codes` that had begun by `as_of`, if any."""
    found = matching_condition(resources, match=code_matcher(codes), as_of=as_of)
    return None if found is None else Reading(True, found.day, found.source, found.code)


def active_medication(resources: Sequence[Resource], *, codes: Sequence[str], as_of: date) -> Reading | None:
    """An active MedicationRequest (order or plan) for one of `codes`, written by `as_of`, if any."""
    found = matching_medication(resources, match=code_matcher(codes), as_of=as_of)
    return None if found is None else Reading(True, found.day, found.source, found.code)


def display_of(resources: Sequence[Resource], source: str, token: str) -> str:
    """The display text of the coding `token` in the resource `source`, for a readable rule."""
    for resource in resources:
        if type(resource) is dict and reference(resource) == source:
            for element in ("code", "medicationCodeableConcept"):
                for coding in codings(resource.get(element)):
                    if (
                        f"{coding.get('system', '')}|{coding.get('code')}" == token
                        and type(coding.get("display")) is str
                    ):
                        return str(coding["display"])
    return token.rsplit("|", 1)[-1]
