"""Recorded quantities in the unit a chart needs: UCUM codes through pint, and a refusal for what cannot convert."""

from __future__ import annotations

import pytest

from portal.units import UCUM, UnitRefused, convert


def _q(value: float, code: str) -> dict[str, object]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def test_pounds_are_converted_to_kilograms() -> None:
    result = convert(_q(185, "[lb_av]"), "kg")

    assert round(result.value, 2) == 83.91
    assert (result.recorded_value, result.recorded_unit) == (185, "[lb_av]")


def test_cholesterol_in_mmol_per_litre_meets_mg_per_decilitre_through_its_molar_mass() -> None:
    assert round(convert(_q(5.2, "mmol/L"), "mg/dL", molar_mass=386.65).value, 1) == 201.1


def test_creatinine_in_micromoles_becomes_mg_per_decilitre() -> None:
    assert round(convert(_q(88.4, "umol/L"), "mg/dL", molar_mass=113.12).value, 2) == 1.0


def test_fahrenheit_keeps_its_offset() -> None:
    assert round(convert(_q(98.6, "[degF]"), "Cel").value, 1) == 37.0


def test_ucum_annotations_and_exponents_are_read() -> None:
    assert convert(_q(95, "mL/min/{1.73_m2}"), "mL/min/{1.73_m2}").value == 95
    assert convert(_q(24.5, "kg/m2"), "kg/m2").value == 24.5
    assert round(convert(_q(16, "kPa"), "mm[Hg]").value) == 120


def test_a_length_is_refused_as_a_weight() -> None:
    with pytest.raises(UnitRefused, match="cm cannot be converted to kg"):
        convert(_q(180, "cm"), "kg")


def test_a_value_without_a_unit_is_refused() -> None:
    with pytest.raises(UnitRefused, match="no unit"):
        convert({"value": 185}, "kg")


def test_an_unknown_unit_is_refused() -> None:
    with pytest.raises(UnitRefused, match="not one this server knows"):
        convert(_q(3, "[stone_x]"), "kg")
