"""Treated kidney failure on record: dialysis, a kidney transplant, or end-stage kidney disease.

A model that predicts kidney failure (the KFRE) is not for a patient who already
has it. The value set `kidney-replacement-therapy` recognises the Conditions and
Procedures that say so, each with its class (dialysis, kidney_transplant,
kidney_failure), by SNOMED CT, ICD-10-CM, ICD-10-PCS and CPT code:

- a Condition counts whatever its clinical status (a resolved end-stage kidney
  disease is still kidney failure); refuted or entered-in-error ones never do;
- a kidney transplant Procedure counts at any time before the as-of date;
- a dialysis Procedure counts when performed within DIALYSIS_CURRENT_DAYS before
  the as-of date: an older one alone may have been dialysis for acute kidney
  injury, from which the kidneys recovered;
- a Procedure not done, entered in error or only in preparation never counts; one
  without a date counts (it is on record, and the model cannot tell it is old).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from diagnostics.inference import values
from diagnostics.inference.base import EXCLUDED, Contribution, InputSpec
from diagnostics.inference.valueset import Match, value_set

VALUE_SET = "kidney-replacement-therapy"
DIALYSIS_CURRENT_DAYS = 90
# Procedure.status values that say the procedure did not (or not yet) happen.
NOT_PERFORMED = frozenset({"not-done", "entered-in-error", "preparation"})
# class -> what it is called in a reason, in the order the reasons are listed.
CLASSES = {
    "dialysis": "dialysis",
    "kidney_transplant": "a kidney transplant",
    "kidney_failure": "end-stage kidney disease",
}

INPUTS = (
    InputSpec("kidney_replacement_condition", "Condition", (), None, False, value_set=VALUE_SET),
    InputSpec("kidney_replacement_procedure", "Procedure", (), None, False, value_set=VALUE_SET),
)


def _of_class(klass: str) -> values.Matcher:
    held = value_set(VALUE_SET)

    def match(concept: Any) -> Match | None:
        found = held.match(concept)
        return found if found is not None and found.klass == klass else None

    return match


def _performed_day(resource: dict[str, Any]) -> date | None:
    # A procedure over a period (a dialysis session, a hospital stay) has happened once it ends.
    period = resource.get("performedPeriod")
    if type(period) is dict:
        return values.parse_day(period.get("end")) or values.parse_day(period.get("start"))
    return values.parse_day(resource.get("performedDateTime"))


def matching_procedure(
    resources: Sequence[dict[str, Any]], *, match: values.Matcher, as_of: date, within_days: int | None
) -> values.Reading | None:
    """The latest performed Procedure the matcher holds, by `as_of` and (when given) within `within_days` of it."""
    found: values.Reading | None = None
    for resource in resources:
        if type(resource) is not dict or resource.get("resourceType") != "Procedure":
            continue
        if resource.get("status") in NOT_PERFORMED:
            continue
        matched = match(resource.get("code"))
        if matched is None:
            continue
        day = _performed_day(resource)
        if day is not None and (day > as_of or (within_days is not None and day < as_of - timedelta(within_days))):
            continue
        reading = values.Reading(matched.display, day or as_of, values.reference(resource), matched.token)
        if found is None or reading.day > found.day:
            found = reading
    return found


def _found(inputs: Mapping[str, Sequence[dict[str, Any]]], klass: str, as_of: date) -> values.Reading | None:
    match = _of_class(klass)
    condition = values.matching_condition(
        inputs.get("kidney_replacement_condition", ()), match=match, as_of=as_of, history=True
    )
    if condition is not None:
        return condition
    within = DIALYSIS_CURRENT_DAYS if klass == "dialysis" else None
    return matching_procedure(
        inputs.get("kidney_replacement_procedure", ()), match=match, as_of=as_of, within_days=within
    )


def exclusions(inputs: Mapping[str, Sequence[dict[str, Any]]], *, as_of: date, model: str) -> list[Contribution]:
    """One "excluded" reason for each class of treated kidney failure on record, naming the resource that says so."""
    found = []
    for klass, words in CLASSES.items():
        held = _found(inputs, klass, as_of)
        if held is None:
            continue
        when = "performed" if held.source.startswith("Procedure/") else "recorded"
        found.append(
            Contribution(
                klass,
                held.value,
                None,
                f"{held.source} ({held.value}, {when} {held.day}) is {words}: {model} predicts kidney failure "
                "and is not for a patient who already has it (on dialysis or with a kidney transplant)",
                kind=EXCLUDED,
            )
        )
    return found
