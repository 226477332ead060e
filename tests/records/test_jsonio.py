"""FHIR JSON keeps a decimal's digits (1.50 is not 1.5) and refuses a property named twice."""

from __future__ import annotations

import pickle

import orjson
import pytest

from records.fhir.jsonio import DuplicateKey, FhirDecimal, dumps_exact, loads_exact


@pytest.mark.parametrize(
    "number", ["1.50", "0.010", "100.0", "1E+2", "2.5e-3", "-0.0", "0.1", "3.14159265358979323846264338327950288"]
)
def test_a_decimal_is_written_back_as_it_came(number: str) -> None:
    text = f'{{"value":{number}}}'

    parsed = loads_exact(text.encode())

    assert dumps_exact(parsed) == text.encode()
    assert parsed["value"] == float(number)  # and it is the number it says, for the models and arithmetic


def test_integers_stay_integers_and_ones_past_64_bits_keep_their_digits() -> None:
    parsed = loads_exact(b'{"a":7,"b":-9223372036854775808,"c":123456789012345678901234567890}')

    assert type(parsed["a"]) is int
    assert type(parsed["b"]) is int
    assert isinstance(parsed["c"], FhirDecimal)
    assert dumps_exact(parsed) == b'{"a":7,"b":-9223372036854775808,"c":123456789012345678901234567890}'


def test_sorted_and_indented_output_keep_the_digits() -> None:
    parsed = loads_exact(b'{"z":1.50,"a":[0.010,{"k":2.0}]}')

    assert dumps_exact(parsed, sort_keys=True) == b'{"a":[0.010,{"k":2.0}],"z":1.50}'
    assert b"1.50" in dumps_exact(parsed, indent=True)


@pytest.mark.parametrize(
    "payload", [b'{"a":1,"a":2}', b'{"x":{"code":"a","code":"b"}}', b'{"entry":[{"resource":{"id":"1","id":"1"}}]}']
)
def test_a_property_named_twice_is_refused_at_any_depth(payload: bytes) -> None:
    with pytest.raises(DuplicateKey):
        loads_exact(payload)


@pytest.mark.parametrize(
    "payload", [b'{"a":NaN}', b'{"a":Infinity}', b'{"a":1e400}', b'{"a":"\\ud800"}', b'{"a":"\xff"}', b'{"a":1,}']
)
def test_what_strict_json_refuses_is_refused(payload: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        loads_exact(payload)


@pytest.mark.parametrize("depth", [990, 1000, 1024, 1025, 5000])
def test_deep_nesting_is_a_decode_error_never_a_recursion_error(depth: int) -> None:
    payload = (b'{"a":' * depth) + b"1" + (b"}" * depth)

    try:
        parsed = loads_exact(payload)
    except orjson.JSONDecodeError:
        return
    assert set(parsed) == {"a"}  # parsed whole; the intake's depth check (FHIR_MAX_DEPTH) refuses it next


def test_a_fhir_decimal_behaves_as_its_float_and_survives_pickling() -> None:
    value = FhirDecimal("1.50")

    assert value == 1.5
    assert value * 2 == 3.0
    assert repr(value) == "1.50"
    assert pickle.loads(pickle.dumps(value)).text == "1.50"
    with pytest.raises(TypeError):
        dumps_exact({"x": object()})
