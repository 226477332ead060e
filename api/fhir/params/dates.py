"""Date parameters: a value is the range of calendar days (or, for _lastUpdated, of instants) it covers.

Date searches (`date`, AuditEvent `date`) run on calendar days, which is what the blind
index holds: a value is the range it covers (2024 is the whole year, 2024-03 the month)
and the prefixes follow FHIR: eq inside the range, ge from its start, gt after its end,
le up to its end, lt before its start. A value with a time is taken as its own day.
`_lastUpdated` is server metadata kept in the clear, so it runs on instants.

The calendar ends (0001-01-01, 9999-12-31T23:59:59.999999) are values like any other: "before
the first day" matches nothing and "up to the last second" matches everything, instead of
stepping past the end of Python's calendar.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from api.fhir.params.checks import bad

PREFIXES = ("eq", "ne", "ge", "gt", "le", "lt", "sa", "eb", "ap")
# ap: within this share of the distance between the value and now (FHIR suggests 10%), and at least a day.
APPROXIMATE_SHARE = 0.1

_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d{1,9})?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _prefixed(parameter: str, raw: str) -> tuple[str, str]:
    if "," in raw:
        raise bad(parameter, "several values in one parameter (OR) are not supported for dates")
    head = raw[:2]
    if head in PREFIXES:
        # A resource's date is indexed as one day (or one instant), so its range starts and ends there:
        # "starts after" is after the value's range (gt), "ends before" is before it (lt).
        return {"sa": "gt", "eb": "lt"}.get(head, head), raw[2:]
    return "eq", raw


def _approximate(first: date, last: date, today: date) -> tuple[date, date]:
    """The days `ap` covers: the value's range widened by a share of its distance from today, at least a day."""
    distance = max(abs((today - first).days), abs((today - last).days))
    margin = timedelta(days=max(1, int(distance * APPROXIMATE_SHARE)))
    low = first - margin if first - date.min >= margin else date.min
    high = last + margin if date.max - last >= margin else date.max
    return low, high


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
        if found["hour"] is not None:
            datetime.fromisoformat(value.replace("Z", "+00:00"))  # the time must be a real one too (no 25:00)
    except ValueError as exc:
        raise bad(parameter, f"{value!r} is not a valid date") from exc
    return day, day


@dataclass
class InstantRange:
    """A half-open range of instants [ge, lt); None is open, `nothing` says no instant can match."""

    ge: datetime | None = None
    lt: datetime | None = None
    nothing: bool = False
    # Half-open ranges of instants excluded (ne); None: to the calendar's end.
    excluded: list[tuple[datetime, datetime | None]] = field(default_factory=list)

    def narrow(self, ge: datetime | None = None, lt: datetime | None = None) -> None:
        if ge is not None and (self.ge is None or ge > self.ge):
            self.ge = ge
        if lt is not None and (self.lt is None or lt < self.lt):
            self.lt = lt

    @property
    def empty(self) -> bool:
        return self.nothing or (self.ge is not None and self.lt is not None and self.ge >= self.lt)


@dataclass
class DayRange:
    """An inclusive range of calendar days; None is open, `nothing` says no day can match."""

    ge: date | None = None
    le: date | None = None
    nothing: bool = False
    # Inclusive ranges of days excluded (ne).
    excluded: list[tuple[date, date]] = field(default_factory=list)

    def narrow(self, ge: date | None = None, le: date | None = None) -> None:
        if ge is not None and (self.ge is None or ge > self.ge):
            self.ge = ge
        if le is not None and (self.le is None or le < self.le):
            self.le = le

    @property
    def empty(self) -> bool:
        return self.nothing or (self.ge is not None and self.le is not None and self.ge > self.le)

    def instants(self) -> InstantRange:
        """The same days as UTC instants; the last day of the calendar leaves the range open above."""
        ge = datetime.combine(self.ge, time.min, tzinfo=UTC) if self.ge is not None else None
        lt = None
        if self.le is not None and self.le < date.max:
            lt = datetime.combine(self.le + timedelta(days=1), time.min, tzinfo=UTC)
        excluded = [
            (
                datetime.combine(first, time.min, tzinfo=UTC),
                datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC) if last < date.max else None,
            )
            for first, last in self.excluded
        ]
        return InstantRange(ge=ge, lt=lt, nothing=self.empty, excluded=excluded)


def day_range(parameter: str, values: list[str]) -> DayRange:
    """Every value of a date parameter, ANDed into one inclusive range of days."""
    out = DayRange()
    for raw in values:
        prefix, value = _prefixed(parameter, raw)
        first, last = _day_range(parameter, value)
        has_time = "T" in value
        if prefix == "eq":
            out.narrow(first, last)
        elif prefix == "ne":
            out.excluded.append((first, last))
        elif prefix == "ap":
            out.narrow(*_approximate(first, last, datetime.now(UTC).date()))
        elif prefix == "ge" or (prefix == "gt" and has_time):
            out.narrow(ge=first)
        elif prefix == "gt":
            if last == date.max:
                out.nothing = True  # after the last day of the calendar
            else:
                out.narrow(ge=last + timedelta(days=1))
        elif prefix == "le" or (prefix == "lt" and has_time):
            out.narrow(le=last)
        elif first == date.min:  # lt the first day of the calendar
            out.nothing = True
        else:
            out.narrow(le=first - timedelta(days=1))
    return out


_FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
_LAST_INSTANT = datetime.max.replace(tzinfo=UTC)


def _utc(instant: datetime) -> datetime:
    # An offset can carry an instant at the calendar's ends past them (0001-01-01T00:00+01:00).
    try:
        return instant.astimezone(UTC)
    except OverflowError:
        return _FIRST_INSTANT if instant.year == 1 else _LAST_INSTANT


def _instant_range(parameter: str, value: str) -> tuple[datetime, datetime | None]:
    """The half-open range of instants a value covers (a day, a second, ...), in UTC unless it says otherwise.

    The end is None for a value that reaches the last instant of the calendar.
    """
    found = _match(parameter, value)
    if found["hour"] is None:
        first, last = _day_range(parameter, value)
        return datetime.combine(first, time.min, tzinfo=UTC), DayRange(le=last).instants().lt
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
    start = _utc(instant)
    return start, (start + step if start <= _LAST_INSTANT - step else None)


def instant_range(parameter: str, values: list[str]) -> InstantRange:
    out = InstantRange()
    for raw in values:
        prefix, value = _prefixed(parameter, raw)
        start, end = _instant_range(parameter, value)
        if prefix == "eq":
            out.narrow(start, end)
        elif prefix == "ne":
            out.excluded.append((start, end))
        elif prefix == "ap":
            now = datetime.now(UTC)
            distance = max(abs(now - start), abs(now - (end or _LAST_INSTANT)))
            margin = max(timedelta(days=1), distance * APPROXIMATE_SHARE)
            low = start - margin if start - _FIRST_INSTANT >= margin else _FIRST_INSTANT
            high = end + margin if end is not None and _LAST_INSTANT - end >= margin else None
            out.narrow(low, high)
        elif prefix == "ge":
            out.narrow(ge=start)
        elif prefix == "gt":
            if end is None:
                out.nothing = True  # after the last instant of the calendar
            else:
                out.narrow(ge=end)
        elif prefix == "le":
            out.narrow(lt=end)
        else:  # lt
            out.narrow(lt=start)
    return out
