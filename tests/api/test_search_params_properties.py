"""Properties of the search-parameter parser (api.fhir.params): any input is a value or a 400, never a crash.

Dates are checked against a model of FHIR's prefixes written independently of the parser: a day
range or instant range must hold exactly the days or instants the prefix says, up to both ends
of the calendar.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from django.http import QueryDict
from hypothesis import example, given
from hypothesis import strategies as st

from api.fhir import params
from api.outcomes import BadRequest

PREFIXES = st.sampled_from(["", "eq", "ge", "gt", "le", "lt"])
DAYS = st.dates(min_value=date.min, max_value=date.max)
# Text shaped like a date often enough to reach past the regular expression.
DATEISH = st.from_regex(
    r"\A(eq|ge|gt|le|lt|ne|ap)?[0-9]{4}(-[0-9]{2}(-[0-9]{2}"
    r"(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?\Z"
)
ANY_TEXT = st.text(max_size=40)


def _query(pairs: list[tuple[str, str]]) -> QueryDict:
    query = QueryDict(mutable=True)
    for name, value in pairs:
        query.appendlist(name, value)
    return query


def _parsed(parse: Any, name: str, values: list[str]) -> tuple[Any, BadRequest | None]:
    try:
        return parse(name, values), None
    except BadRequest as error:
        return None, error


def _day_matches(prefix: str, value: date, day: date) -> bool:
    """FHIR's prefixes on a day value (the value's range is that one day)."""
    return {
        "": day == value,
        "eq": day == value,
        "ge": day >= value,
        "gt": day > value,
        "le": day <= value,
        "lt": day < value,
    }[prefix]


def _in_days(found: params.DayRange, day: date) -> bool:
    if found.empty:
        return False
    return (found.ge is None or found.ge <= day) and (found.le is None or day <= found.le)


def _in_instants(found: params.InstantRange, instant: datetime) -> bool:
    if found.empty:
        return False
    return (found.ge is None or found.ge <= instant) and (found.lt is None or instant < found.lt)


@given(st.lists(st.one_of(DATEISH, ANY_TEXT), max_size=3))
@example(["le9999-12-31"])
@example(["gt9999-12-31"])
@example(["lt0001-01-01"])
@example(["9999-12-31T23:59:59-01:00"])
@example(["lt0001-01-01T00:00:00+14:00"])
def test_any_date_values_are_a_day_range_or_a_400_naming_the_parameter(values: list[str]) -> None:
    found, refused = _parsed(params.day_range, "date", values)

    if refused is not None:
        assert refused.message.startswith("search parameter date: ")
    else:
        assert found.instants().empty == found.empty  # the same range in instants never steps past the calendar


@given(st.lists(st.one_of(DATEISH, ANY_TEXT), max_size=3))
@example(["le9999-12-31T23:59:59Z"])
@example(["gt9999-12-31T23:59:59.999999Z"])
@example(["ge9999-12-31T23:59:59-14:00"])
@example(["lt0001-01-01T00:00:00+14:00"])
def test_any_last_updated_values_are_an_instant_range_or_a_400_naming_the_parameter(values: list[str]) -> None:
    found, refused = _parsed(params.instant_range, "_lastUpdated", values)

    if refused is not None:
        assert refused.message.startswith("search parameter _lastUpdated: ")
    else:
        assert all(bound is None or bound.utcoffset() == timedelta(0) for bound in (found.ge, found.lt))


@given(PREFIXES, DAYS, DAYS)
@example("le", date.max, date.max)
@example("gt", date.max, date.max)
@example("lt", date.min, date.min)
@example("ge", date.min, date.min)
def test_a_day_value_with_any_prefix_holds_exactly_the_days_fhir_says(prefix: str, value: date, day: date) -> None:
    found = params.day_range("date", [f"{prefix}{value.isoformat()}"])

    assert _in_days(found, day) == _day_matches(prefix, value, day)
    moment = datetime.combine(day, time(12), tzinfo=UTC)
    assert _in_instants(found.instants(), moment) == _day_matches(prefix, value, day)


@given(PREFIXES, DAYS, DAYS)
@example("le", date.max, date.max)
@example("gt", date.max, date.max)
@example("lt", date.min, date.min)
def test_last_updated_on_a_day_holds_exactly_the_instants_fhir_says(prefix: str, value: date, day: date) -> None:
    found = params.instant_range("_lastUpdated", [f"{prefix}{value.isoformat()}"])

    for moment in (datetime.combine(day, time.min, tzinfo=UTC), datetime.combine(day, time.max, tzinfo=UTC)):
        assert _in_instants(found, moment) == _day_matches(prefix, value, day)


@given(st.lists(st.tuples(st.sampled_from(["_count", "_offset", "_sort", "_sort"]), ANY_TEXT), max_size=4))
@example([("_count", "²")])
@example([("_offset", "9" * 5000)])
@example([("_count", "-0")])
def test_any_paging_values_are_paging_or_a_400(pairs: list[tuple[str, str]]) -> None:
    try:
        found = params.paging(_query(pairs), frozenset({"date", "-date"}))
    except BadRequest:
        return
    assert 0 <= found.count <= params.COUNT_MAX
    assert 0 <= found.offset <= 10**9
    assert found.sort in ("", "date", "-date")


@given(st.lists(st.tuples(st.sampled_from(["patient", "subject", "_id", "code", "x"]), ANY_TEXT), max_size=4))
@example([("patient", "\x00")])
@example([("subject", "Patient/../../x")])
def test_any_patient_id_and_token_values_are_parsed_or_a_400(pairs: list[tuple[str, str]]) -> None:
    query = _query(pairs)
    try:
        params.unknown_check(query, frozenset({"patient", "subject", "_id", "code"}))
        named = params.patient_param(query)
        ids = params.id_list("_id", query.getlist("_id")) if query.getlist("_id") else ()
        params.token_groups("code", query.getlist("code"))
    except BadRequest:
        return
    for ident in [named, *ids]:
        assert ident is None or (0 < len(ident) <= 64 and ident.isascii() and "/" not in ident)


@pytest.mark.parametrize("name", ["date", "code", "_count", "x"])
@given(control=st.sampled_from([chr(c) for c in range(0x20)] + ["\x7f"]), text=ANY_TEXT)
def test_a_control_character_in_any_parameter_is_a_400(name: str, control: str, text: str) -> None:
    with pytest.raises(BadRequest, match="control character"):
        params.unknown_check(_query([(name, text + control)]), frozenset({"date", "code"}))
