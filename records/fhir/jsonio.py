"""FHIR JSON in and out without losing what a decimal says.

In FHIR the precision of a decimal has significance: 1.50 is not 1.5, and 0.010 is not 0.01
(a lab value's significant figures). A float keeps the value but not the digits, so documents
parsed for writing keep each decimal's text beside its value, in `FhirDecimal` (a float
subclass, so the R4B models validate it as the number it is), and `dumps_exact` writes that
text back digit for digit. Everything else parses and serializes as orjson does.

FHIR JSON also forbids a property named twice in one object; `loads_exact` refuses it
(DuplicateKey) rather than keep whichever came last.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Integers beyond this are kept as written (serialized from their text), as orjson cannot write them.
_INT64 = 2**63


class FhirDecimal(float):
    """A JSON number with a fraction or an exponent, as a float that remembers how it was written."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> FhirDecimal:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __repr__(self) -> str:
        return self.text

    def __reduce__(self) -> tuple[type[FhirDecimal], tuple[str]]:
        return (FhirDecimal, (self.text,))


class DuplicateKey(ValueError):
    """An object names the same property twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the property {key!r} appears twice in one object")
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return result


def _integer(text: str) -> int | FhirDecimal:
    value = int(text)
    return value if -_INT64 <= value < _INT64 else FhirDecimal(text)


def loads_exact(payload: bytes | str) -> Any:
    """Parse strictly, keeping every decimal's digits. Raises orjson.JSONDecodeError or DuplicateKey.

    orjson checks the syntax first (its rules: valid UTF-8, no lone surrogates, no NaN or
    Infinity, no number that overflows a double); the tree is then built by the standard
    library's parser, which hands each number's text to FhirDecimal and each object's pairs
    to the duplicate check.
    """
    orjson.loads(payload)
    try:
        return json.loads(payload, parse_float=FhirDecimal, parse_int=_integer, object_pairs_hook=_object)
    except RecursionError:
        # Nesting orjson allows (up to 1,024) but the recursive parser cannot follow from where it was
        # called: refused as orjson refuses deeper documents. Nothing real nests this deep.
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        raise orjson.JSONDecodeError("depth limit exceeded", text, 0) from None


def _text(value: object) -> orjson.Fragment:
    if isinstance(value, FhirDecimal):
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_exact(value: Any, *, sort_keys: bool = False, indent: bool = False) -> bytes:
    """orjson.dumps that writes FhirDecimals as they were written."""
    option = (orjson.OPT_SORT_KEYS if sort_keys else 0) | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, option=option, default=_text)
