"""value-quantity in the blind index: a value's tokens meet a range's cover exactly when the value is in the range."""

from __future__ import annotations

import random

import pytest

from records.fhir.quantity import QuantityQueryError, cover, quantity_query, quantity_tokens, value_tokens


def _in(value: float, low: float | None, high: float | None) -> bool:
    return bool(set(value_tokens(value)) & set(cover(low, high)))


def test_a_value_meets_the_cover_of_a_range_exactly_when_it_lies_inside():
    rng = random.Random(14)
    for _ in range(3000):
        scale = 10.0 ** rng.randint(-6, 8)
        value = round(rng.uniform(-1, 1) * scale, 4)
        low, high = sorted(round(rng.uniform(-1, 1) * scale, 4) for _ in range(2))
        # Six significant digits: values this close to an end may fall either way.
        margin = 1e-5 * max(abs(low), abs(high), abs(value))
        if abs(value - low) <= margin or abs(value - high) <= margin:
            continue
        assert _in(value, low, high) == (low <= value <= high), (value, low, high)
        assert _in(value, low, None) == (value >= low)
        assert _in(value, None, high) == (value <= high)


def test_zero_and_the_ends_of_the_indexed_decades():
    assert _in(0.0, -1, 1)
    assert not _in(0.0, 0.5, 1)
    assert _in(1e20, 5, None)  # beyond the indexed decades counts as the nearest end
    assert not _in(-3.0, None, -4)


def test_a_quantity_is_indexed_as_recorded_and_in_base_units():
    tokens = quantity_tokens({"value": 5.4, "system": "http://unitsofmeasure.org", "code": "mmol/L"})
    assert "@+0|54" in tokens  # as recorded, under no unit
    assert any(token.startswith("ucum:mole / meter ** 3@+0|54") for token in tokens)  # 5.4 mol/m3
    assert quantity_tokens({"value": "5"}) == set()


def test_queries_read_prefixes_units_and_precision():
    unit, negated, tokens = quantity_query("5.4|http://unitsofmeasure.org|mmol/L")
    assert (unit, negated) == ("ucum:mole / meter ** 3", False)
    assert set(tokens) & set(value_tokens(5.35))
    assert set(tokens) & set(value_tokens(5.449))
    assert not set(tokens) & set(value_tokens(5.45))
    assert quantity_query("ne5")[1] is True
    for bad in ("abc", "gt", "5|http://unitsofmeasure.org|[nope]", "5|sys", "nan", "1e999"):
        with pytest.raises(QuantityQueryError):
            quantity_query(bad)
