"""Reading model inputs out of FHIR R4 resources, without ever guessing one: codes, dates, quantities, observations.

The worker hands each model the resources the gate released for an input's
resource type and codes. The blind index narrowed them by code; everything else
is checked here: the code again (a panel's component or the resource's own
code), the status, the date (not after the score date, not older than the
input's lookback), the unit (converted to the one the equation uses) and the
value's type. Of the valid values the most recent wins. When none is valid the
caller gets an `Absent` that says why, never a default.

Dates compare as calendar dates as written (a dateTime keeps its own local
date), the way the search index reads them; within one day, the later instant
wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from diagnostics.inference.base import Contribution, InputSpec

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
OMB_RACE = "urn:oid:2.16.840.1.113883.6.238"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"

# Registered results only: a preliminary, cancelled or entered-in-error value never feeds a score.
USABLE_OBSERVATION_STATUSES = frozenset({"final", "amended", "corrected"})
ACTIVE_CONDITION_STATUSES = frozenset({"active", "recurrence", "relapse"})
# A condition counts when confirmed, or when the record does not say (most EHR exports omit it).
EXCLUDED_VERIFICATION_STATUSES = frozenset(
    {"refuted", "entered-in-error", "unconfirmed", "provisional", "differential"}
)

Resource = dict[str, Any]


def loinc(code: str) -> str:
    return f"{LOINC}|{code}"


def snomed(code: str) -> str:
    return f"{SNOMED}|{code}"


def rxnorm(code: str) -> str:
    return f"{RXNORM}|{code}"


@dataclass(frozen=True)
class Reading:
    """A valid value for an input, and where it came from."""

    value: Any  # a number in the equation's unit, or a mapped code
    day: date  # the calendar date it was measured (or recorded)
    source: str  # "Observation/<id>", for the contribution's rule
    code: str  # the "system|code" token that matched
    instant: datetime | None = None  # when it was measured, to the second, where the record says


@dataclass(frozen=True)
class Absent:
    """No valid value: why, in words a clinician can act on, and the kind of reason (base.REASON_KINDS)."""

    reason: str
    kind: str = "missing"
    window_days: int | None = None
    unit: str = ""


class Unusable(Exception):
    """A matching element whose value cannot be used (wrong unit, no number, unknown answer)."""

    def __init__(self, message: str, *, kind: str = "unusable", unit: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.unit = unit


def problem(name: str, absent: Absent) -> Contribution:
    """The Contribution that says why input `name` stops the model."""
    return Contribution(
        name, None, None, absent.reason, kind=absent.kind, window_days=absent.window_days, unit=absent.unit
    )


def limits_problem(item: InputSpec, value: float) -> Contribution | None:
    """A problem when `value` lies outside the limits input `item` declares (None when it declares none)."""
    if item.limits is None:
        return None
    return out_of_range(item.name, value, item.limits, item.unit, item.limits_basis or "what the model accepts")


def out_of_range(name: str, value: float, bounds: tuple[float, float], unit: str, why: str) -> Contribution | None:
    """A problem when `value` lies outside `bounds` (inclusive), saying which range it is held to and why."""
    low, high = bounds
    if low <= value <= high:
        return None
    return Contribution(
        name,
        round(value, 3),
        None,
        f"{value:g} {unit} is outside {why} ({low:g}-{high:g} {unit})",
        kind="out-of-range",
        low=low,
        high=high,
        unit=unit,
    )


# --- codes and dates -------------------------------------------------------------------------


def codings(concept: Any) -> list[dict[str, Any]]:
    """The codings of a CodeableConcept (an empty list for anything else)."""
    if type(concept) is not dict:
        return []
    found = concept.get("coding")
    return [c for c in found if type(c) is dict] if type(found) is list else []


def concept_tokens(concept: Any) -> list[str]:
    """The "system|code" tokens of a CodeableConcept, in order."""
    tokens = []
    for coding in codings(concept):
        code, system = coding.get("code"), coding.get("system")
        if type(code) is str:
            tokens.append(f"{system if type(system) is str else ''}|{code}")
    return tokens


def first_match(concept: Any, codes: Iterable[str]) -> str | None:
    """The first token of `concept` that is among `codes`."""
    wanted = set(codes)
    return next((token for token in concept_tokens(concept) if token in wanted), None)


def parse_day(value: Any) -> date | None:
    """The calendar date a FHIR date or dateTime names as written; None for partial or malformed dates."""
    if type(value) is not str or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def parse_instant(value: Any) -> datetime | None:
    """An aware datetime for ordering readings of one day; a bare date counts as its midnight UTC."""
    if type(value) is not str or len(value) < 10:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00")) if len(value) > 10 else None
    except ValueError:
        parsed = None
    if parsed is None:
        day = parse_day(value)
        return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def clinical_time(resource: Resource) -> str | None:
    """When an Observation was true: effective[x], else when it was issued."""
    for name in ("effectiveDateTime", "effectiveInstant"):
        if type(resource.get(name)) is str:
            return resource[name]
    period = resource.get("effectivePeriod")
    if type(period) is dict:
        # A measurement over a period (a 24-hour collection) is known once the period ends.
        when = period.get("end") or period.get("start")
        if type(when) is str:
            return when
    issued = resource.get("issued")
    return issued if type(issued) is str else None


def reference(resource: Resource) -> str:
    return f"{resource.get('resourceType', 'Resource')}/{resource.get('id', '?')}"


def half_up(value: float, digits: int = 0) -> float:
    """Round half away from zero, as charts and lab reports do (Python's round() is half-to-even)."""
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(str(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def window_text(lookback_days: int | None) -> str:
    return (
        "at any time up to the score date"
        if lookback_days is None
        else f"in the {lookback_days} days up to the score date"
    )


# --- quantities ------------------------------------------------------------------------------

Conversion = Callable[[float], float]


def same(value: float) -> float:
    return value


def quantity_reader(units: Mapping[str, Conversion], unit_label: str) -> Callable[[dict[str, Any]], float]:
    """A reader of a valueQuantity in one of `units` (UCUM code, else the unit text), converted."""

    def read(node: dict[str, Any]) -> float:
        quantity = node.get("valueQuantity")
        if type(quantity) is not dict:
            raise Unusable("it carries no quantity")
        number: Any = quantity.get("value")
        # A bool is not a measurement; a float subclass is (a decimal parsed with its digits kept).
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise Unusable("its quantity has no number")
        if quantity.get("comparator") is not None:
            raise Unusable(f"its value is bounded ({quantity['comparator']}{number}), not measured")
        unit = quantity.get("code") if type(quantity.get("code")) is str else quantity.get("unit")
        if type(unit) is not str or unit not in units:
            raise Unusable(f"its unit {unit!r} is not {unit_label}", kind="wrong-unit", unit=unit_label)
        return units[unit](float(number))

    return read


def latest_observation(
    resources: Sequence[Resource],
    *,
    codes: Sequence[str],
    as_of: date,
    lookback_days: int | None,
    read: Callable[[dict[str, Any]], Any],
    what: str,
) -> Reading | Absent:
    """The most recent valid value of `codes` among Observations (their own code or a component's)."""
    earliest = as_of - timedelta(days=lookback_days) if lookback_days is not None else None
    best: tuple[datetime, int, Reading] | None = None
    seen = too_old = too_new = 0
    unusable: list[Unusable] = []
    newest_old: date | None = None
    for index, resource in enumerate(resources):
        if type(resource) is not dict or resource.get("resourceType") != "Observation":
            continue
        if resource.get("status") not in USABLE_OBSERVATION_STATUSES:
            continue
        for node in [resource, *[c for c in resource.get("component") or () if type(c) is dict]]:
            token = first_match(node.get("code"), codes)
            if token is None:
                continue
            seen += 1
            when = clinical_time(resource)
            day, instant = parse_day(when), parse_instant(when)
            if day is None or instant is None:
                unusable.append(Unusable("it has no full date"))
                continue
            if day > as_of:
                too_new += 1
                continue
            if earliest is not None and day < earliest:
                too_old += 1
                newest_old = day if newest_old is None or day > newest_old else newest_old
                continue
            try:
                value = read(node)
            except Unusable as problem:
                unusable.append(problem)
                continue
            reading = Reading(value=value, day=day, source=reference(resource), code=token, instant=instant)
            candidate = (instant, index, reading)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
    if best is not None:
        return best[2]
    return _absent(what, seen=seen, too_old=too_old, newest_old=newest_old, unusable=unusable, lookback=lookback_days)


def declared_quantity(
    inputs: Mapping[str, Sequence[Resource]],
    item: InputSpec,
    *,
    as_of: date,
    read: Callable[[dict[str, Any]], Any],
    what: str,
    problems: list[Contribution],
) -> Reading | None:
    """The latest valid value of the declared input `item`, held to the limits it declares.

    The input's resources, codes and lookback come from its declaration; when there is no usable value,
    or it lies outside the declared limits, the reason is appended to `problems` and None returned.
    """
    found = latest_observation(
        inputs.get(item.name, ()),
        codes=item.codes,
        as_of=as_of,
        lookback_days=item.lookback_days,
        read=read,
        what=what,
    )
    if isinstance(found, Absent):
        problems.append(problem(item.name, found))
        return None
    if isinstance(found.value, int | float) and not isinstance(found.value, bool):
        bad = limits_problem(item, found.value)
        if bad is not None:
            problems.append(bad)
            return None
    return found


def _absent(
    what: str, *, seen: int, too_old: int, newest_old: date | None, unusable: list[Unusable], lookback: int | None
) -> Absent:
    if seen == 0:
        return Absent(f"no {what} is recorded", window_days=lookback)
    if unusable:
        last = unusable[-1]
        text = f"the {what} recorded {window_text(lookback)} cannot be used: {last}"
        return Absent(text, kind=last.kind, window_days=lookback, unit=last.unit)
    if too_old and lookback is not None:
        return Absent(
            f"the latest {what} is from {newest_old}, older than the {lookback}-day window up to the score date",
            kind="stale",
            window_days=lookback,
        )
    return Absent(f"no {what} is recorded on or before the score date", window_days=lookback)
