"""Quantities in the blind index: `value-quantity` with prefixes and units, without the value in the clear.

A value is indexed as keyed tokens of its decimal form at seven precisions: its sign and
decade, then one to six significant digits ("+1|54" for 5.4 at two digits). A range of
values is covered by the fewest such prefixes (like the date index's year, month, day), so
`gt`, `le`, `ap` ... are a handful of token lookups and nothing is decrypted to compare.
Values compare to six significant digits.

Each value is indexed twice: as recorded, under no unit (a query with no unit matches any
unit, as FHIR says), and in base units through UCUM (records.units), so `5.4|http://unitsofmeasure.org|mmol/L`
finds 0.0054 mol/m³ however it was written; a unit pint cannot read is kept under its own code.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from records.units import UCUM, UnitRefused, to_base

DIGITS = 6
# Decades indexed: a value beyond them counts as the nearest end (|x| < 1e-12 is zero).
LOWEST, HIGHEST = -12, 12
APPROXIMATE_SHARE = 0.1
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
PREFIXES = ("eq", "ne", "gt", "ge", "lt", "le", "sa", "eb", "ap")


class QuantityQueryError(ValueError):
    """A value-quantity query that cannot be read (says why, for the 400)."""


def _key(value: float) -> tuple[str, int, str]:
    """(sign, decade, six digits) of a nonzero value inside the indexed decades; ("0", 0, "") for zero."""
    magnitude = abs(value)
    if magnitude < 10.0**LOWEST:
        return "0", 0, ""
    magnitude = min(magnitude, 9.99999 * 10.0**HIGHEST)  # the largest six digits of the highest decade
    decade = math.floor(math.log10(magnitude))
    digits = f"{magnitude / 10.0**decade:.{DIGITS - 1}f}".replace(".", "")
    if len(digits) > DIGITS:  # 9.999995 rounds up to 10.00000: the next decade
        decade, digits = decade + 1, "1" + "0" * (DIGITS - 1)
    return ("-" if value < 0 else "+"), decade, digits


def value_tokens(value: float) -> list[str]:
    """The tokens of one value (without its unit key): its decade and every prefix of its digits."""
    sign, decade, digits = _key(value)
    if sign == "0":
        return ["0"]
    return [f"{sign}{decade}|{digits[:n]}" for n in range(DIGITS + 1)]


def _unit_keys(quantity: dict[str, Any]) -> list[tuple[str, float]]:
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return []
    number = float(value)
    keys = [("", number)]
    system, code = quantity.get("system"), quantity.get("code")
    unit = code if isinstance(code, str) else quantity.get("unit")
    if not isinstance(unit, str) or not unit.strip():
        return keys
    if system in (UCUM, None):
        try:
            magnitude, base = to_base(number, unit)
            return [*keys, (f"ucum:{base}", magnitude)]
        except UnitRefused:
            pass
    return [*keys, (f"code:{system if isinstance(system, str) else ''}|{unit}", number)]


def quantity_tokens(quantity: Any) -> set[str]:
    """The index tokens of one Quantity: "<unit key>@<value token>" for each unit key it has."""
    if type(quantity) is not dict:
        return set()
    return {f"{unit}@{token}" for unit, number in _unit_keys(quantity) for token in value_tokens(number)}


# --- Queries --------------------------------------------------------------------------------


def _cover_digits(low: int, high: int, prefix: str = "", width: int = DIGITS) -> list[str]:
    """The fewest digit prefixes covering the integers [low, high] of `width` digits (low, high of full width)."""
    if low > high:
        return []
    span = 10 ** (width - len(prefix))
    # Digits of a decade run from 1 (100000) to 9 (999999): the empty prefix is the whole decade.
    start = max(int(prefix + "0" * (width - len(prefix))), 10 ** (width - 1))
    end = int(prefix + "9" * (width - len(prefix)))
    if low <= start and end <= high:
        return [prefix]
    if len(prefix) == width:
        return []
    out: list[str] = []
    first_digit = 1 if not prefix else 0
    for digit in range(first_digit, 10):
        child = prefix + str(digit)
        child_start = int(child + "0" * (width - len(child)))
        child_end = child_start + span // 10 - 1
        if child_end < low or child_start > high:
            continue
        out += _cover_digits(low, high, child, width)
    return out


def _cover_magnitudes(low: float, high: float, sign: str) -> list[str]:
    """Tokens covering the magnitudes [low, high] (both > 0) of values with this sign."""
    _, low_decade, low_digits = _key(low)
    _, high_decade, high_digits = _key(high)
    out: list[str] = []
    for decade in range(max(low_decade, LOWEST), min(high_decade, HIGHEST) + 1):
        first = int(low_digits) if decade == low_decade else 10 ** (DIGITS - 1)
        last = int(high_digits) if decade == high_decade else 10**DIGITS - 1
        out += [f"{sign}{decade}|{prefix}" for prefix in _cover_digits(first, last)]
    return out


def cover(low: float | None, high: float | None) -> list[str]:
    """Value tokens covering [low, high] (None: open); both ends at six significant digits."""
    top = 10.0 ** (HIGHEST + 1)
    low = -top if low is None else low
    high = top if high is None else high
    if low > high:
        return []
    tiny = 10.0**LOWEST
    out: list[str] = []
    if high >= tiny:
        out += _cover_magnitudes(max(low, tiny), min(high, top), "+")
    if low <= -tiny:
        out += _cover_magnitudes(max(-high, tiny), min(-low, top), "-")
    if low < tiny and high > -tiny:
        out.append("0")
    return out


def _step(text: str) -> float:
    """Half the value of the last significant digit written ("5.4" -> 0.05, "100" -> 0.5)."""
    exponent = Decimal(text).as_tuple().exponent
    return 0.5 * 10.0 ** (exponent if isinstance(exponent, int) else 0)


def _next_up(value: float) -> float:
    """The smallest value with another six-digit key above `value` (for gt on the index's precision)."""
    sign, decade, digits = _key(value)
    if sign == "0":
        return 10.0**LOWEST
    magnitude = (int(digits) + (1 if sign == "+" else -1)) * 10.0 ** (decade - DIGITS + 1)
    return magnitude if sign == "+" else -magnitude


def _next_down(value: float) -> float:
    return -_next_up(-value)


def quantity_query(raw: str) -> tuple[str, bool, list[str]]:
    """A value-quantity query's unit key, whether it excludes (ne), and its value tokens.

    `[prefix]number[|system|code]`; `number||unit` names the unit without a system.
    """
    prefix = raw[:2] if raw[:2] in PREFIXES else "eq"
    text, _, rest = raw.removeprefix(prefix if raw[:2] in PREFIXES else "").partition("|")
    text = text.strip()
    if not _NUMBER.match(text):
        raise QuantityQueryError(f"{raw!r}: a number, optionally prefixed (eq, ne, gt, ge, lt, le, sa, eb, ap)")
    try:
        number = float(Decimal(text))
    except (InvalidOperation, OverflowError) as exc:
        raise QuantityQueryError(f"{raw!r}: not a number") from exc
    if not math.isfinite(number):
        raise QuantityQueryError(f"{raw!r}: not a finite number")
    system, _, code = rest.partition("|")
    step = _step(text)
    unit_key = ""
    if code:
        if system in (UCUM, ""):
            try:
                base, unit_name = to_base(number, code)
                # The step scales by the unit's size; an offset unit (Cel) moves the value, not the step.
                scale = abs(to_base(number + 1.0, code)[0] - base)
                number, step, unit_key = base, step * scale, f"ucum:{unit_name}"
            except UnitRefused:
                if system == UCUM:
                    raise QuantityQueryError(f"{raw!r}: the unit {code!r} is not one this server knows") from None
                unit_key = f"code:|{code}"
        else:
            unit_key = f"code:{system}|{code}"
    elif system:
        raise QuantityQueryError(f"{raw!r}: give number|system|code, or number||code")
    low: float | None
    high: float | None
    if prefix in ("eq", "ne"):
        low, high = number - step, _next_down(number + step)
    elif prefix == "ap":
        margin = max(abs(number) * APPROXIMATE_SHARE, step)
        low, high = number - margin, number + margin
    elif prefix in ("gt", "sa"):
        low, high = _next_up(number), None
    elif prefix == "ge":
        low, high = number, None
    elif prefix in ("lt", "eb"):
        low, high = None, _next_down(number)
    else:  # le
        low, high = None, number
    return unit_key, prefix == "ne", cover(low, high)
