"""FHIR search parameters: prefixes, dates, tokens, paging; every problem is a 400 naming the parameter.

Date searches (`date`, AuditEvent `date`) run on calendar days, which is what the blind
index holds: a value is the range it covers (2024 is the whole year, 2024-03 the month)
and the prefixes follow FHIR: eq inside the range, ge from its start, gt after its end,
le up to its end, lt before its start. A value with a time is taken as its own day.
`_lastUpdated` is server metadata kept in the clear, so it runs on instants.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.http import QueryDict

from api.outcomes import BadRequest

PREFIXES = ("eq", "ge", "gt", "le", "lt")
UNSUPPORTED_PREFIXES = ("ne", "sa", "eb", "ap")
COUNT_DEFAULT = 50
COUNT_MAX = 1000
# Accepted everywhere and without effect on the result (_total: the total is always counted exactly).
IGNORED = frozenset({"_format", "_pretty", "_total"})
PAGING = frozenset({"_count", "_offset"})

_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d{1,9})?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def bad(parameter: str, message: str) -> BadRequest:
    return BadRequest(f"search parameter {parameter}: {message}")


def unknown_check(params: QueryDict, supported: frozenset[str]) -> None:
    """400 naming every parameter this search does not support."""
    unknown = sorted({name for name in params if name not in supported | IGNORED | PAGING})
    if unknown:
        raise BadRequest(
            f"unsupported search parameter(s): {', '.join(unknown)}; supported: {', '.join(sorted(supported | PAGING))}"
        )


def _prefixed(parameter: str, raw: str) -> tuple[str, str]:
    if "," in raw:
        raise bad(parameter, "several values in one parameter (OR) are not supported for dates")
    head = raw[:2]
    if head in PREFIXES:
        return head, raw[2:]
    if head in UNSUPPORTED_PREFIXES:
        raise bad(parameter, f"the prefix {head} is not supported (eq, ge, gt, le, lt)")
    return "eq", raw


def _match(parameter: str, value: str) -> re.Match[str]:
    found = _DATE.match(value)
    if found is None:
        raise bad(parameter, f"{value!r} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)")
    return found


def _day_range(parameter: str, value: str) -> tuple[date, date]:
    """The first and last calendar day a value covers."""
    found = _match(parameter, value)
    try:
        year = int(found["year"])
        if found["month"] is None:
            return date(year, 1, 1), date(year, 12, 31)
        month = int(found["month"])
        if found["day"] is None:
            return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
        day = date(year, month, int(found["day"]))
    except ValueError as exc:
        raise bad(parameter, f"{value!r} is not a valid date") from exc
    return day, day


@dataclass
class DayRange:
    """An inclusive range of calendar days; None is open."""

    ge: date | None = None
    le: date | None = None

    def narrow(self, ge: date | None = None, le: date | None = None) -> None:
        if ge is not None and (self.ge is None or ge > self.ge):
            self.ge = ge
        if le is not None and (self.le is None or le < self.le):
            self.le = le


def day_range(parameter: str, values: list[str]) -> DayRange:
    """Every value of a date parameter, ANDed into one inclusive range of days."""
    out = DayRange()
    for raw in values:
        prefix, value = _prefixed(parameter, raw)
        first, last = _day_range(parameter, value)
        has_time = "T" in value
        if prefix == "eq":
            out.narrow(first, last)
        elif prefix == "ge" or (prefix == "gt" and has_time):
            out.narrow(ge=first)
        elif prefix == "gt":
            out.narrow(ge=last + timedelta(days=1))
        elif prefix == "le" or (prefix == "lt" and has_time):
            out.narrow(le=last)
        else:  # lt
            out.narrow(le=first - timedelta(days=1))
    return out


def _instant_range(parameter: str, value: str) -> tuple[datetime, datetime]:
    """The half-open range of instants a value covers (a day, a second, ...); UTC unless it says otherwise."""
    found = _match(parameter, value)
    if found["hour"] is None:
        first, last = _day_range(parameter, value)
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        return start, datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    text = value.replace("Z", "+00:00")
    try:
        instant = datetime.fromisoformat(text if found["tz"] else text + "+00:00")
    except ValueError as exc:
        raise bad(parameter, f"{value!r} is not a valid dateTime") from exc
    if found["fraction"]:
        step = timedelta(microseconds=1)
    elif found["second"]:
        step = timedelta(seconds=1)
    else:
        step = timedelta(minutes=1)
    return instant, instant + step


@dataclass
class InstantRange:
    """A half-open range of instants [ge, lt); None is open."""

    ge: datetime | None = None
    lt: datetime | None = None

    def narrow(self, ge: datetime | None = None, lt: datetime | None = None) -> None:
        if ge is not None and (self.ge is None or ge > self.ge):
            self.ge = ge
        if lt is not None and (self.lt is None or lt < self.lt):
            self.lt = lt

    @property
    def empty(self) -> bool:
        return self.ge is not None and self.lt is not None and self.ge >= self.lt


def instant_range(parameter: str, values: list[str]) -> InstantRange:
    out = InstantRange()
    for raw in values:
        prefix, value = _prefixed(parameter, raw)
        start, end = _instant_range(parameter, value)
        if prefix == "eq":
            out.narrow(start, end)
        elif prefix == "ge":
            out.narrow(ge=start)
        elif prefix == "gt":
            out.narrow(ge=end)
        elif prefix == "le":
            out.narrow(lt=end)
        else:  # lt
            out.narrow(lt=start)
    return out


def token_groups(parameter: str, values: list[str]) -> tuple[tuple[str, ...], ...]:
    """Each value is a comma-separated OR of "system|code"; several values are ANDed."""
    groups = []
    for raw in values:
        group = tuple(part.strip() for part in raw.split(","))
        for token in group:
            _, bar, code = token.partition("|")
            if not bar or not code or "|" in code:
                raise bad(parameter, f'{token!r} must be "system|code" ("|code" for a code without a system)')
        groups.append(group)
    return tuple(groups)


def id_list(parameter: str, values: list[str]) -> tuple[str, ...]:
    if len(values) > 1:
        raise bad(parameter, "give one value, with several ids separated by commas")
    ids = tuple(part.strip() for part in values[0].split(",") if part.strip()) if values else ()
    if any(not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", i) for i in ids):
        raise bad(parameter, "ids are 1 to 64 of A-Z a-z 0-9 - .")
    return ids


def _integer(params: QueryDict, name: str, default: int, maximum: int | None = None) -> int:
    values = params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise bad(name, "give it once")
    try:
        number = int(values[0])
    except ValueError as exc:
        raise bad(name, "must be a whole number") from exc
    if number < 0:
        raise bad(name, "must not be negative")
    if maximum is not None and number > maximum:
        raise bad(name, f"at most {maximum}")
    return number


@dataclass(frozen=True)
class Paging:
    count: int = COUNT_DEFAULT
    offset: int = 0
    sort: str = ""


def paging(params: QueryDict, sorts: frozenset[str] = frozenset()) -> Paging:
    """_count (default 50, at most 1000; 0 asks only for the total), _offset, and _sort among `sorts`."""
    count = _integer(params, "_count", COUNT_DEFAULT, COUNT_MAX)
    offset = _integer(params, "_offset", 0, 10**9)
    sort = ""
    values = params.getlist("_sort")
    if values:
        if len(values) > 1 or values[0] not in sorts:
            raise bad("_sort", f"supported: {', '.join(sorted(sorts)) or 'none'}")
        sort = values[0]
    return Paging(count=count, offset=offset, sort=sort)


def patient_param(params: QueryDict) -> str | None:
    """The Patient id from `patient=<id>`, `patient=Patient/<id>` or `subject=Patient/<id>`; 400 when they disagree."""
    named: set[str] = set()
    for name in ("patient", "subject"):
        for raw in params.getlist(name):
            value = raw.strip()
            if name == "subject" and not value.startswith("Patient/"):
                raise bad("subject", "only Patient subjects are searchable (subject=Patient/<id>)")
            value = value.removeprefix("Patient/")
            if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", value):
                raise bad(name, "must be a Patient id")
            named.add(value)
    if len(named) > 1:
        raise BadRequest("search parameters patient and subject name different patients")
    return next(iter(named), None)
