"""FHIR quantities in the units a chart or a comparison needs: pint, taught the UCUM atoms FHIR records use.

Conversions over records.units (the seam to pint). A value that cannot be converted is refused
with a `UnitRefused` saying why, never plotted in the wrong unit: 185 [lb_av] is 83.9 kg,
and "185" with no unit is not a weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pint

from records.units import UCUM, UnitRefused, parse_unit, quantity_unit, registry

# The units seam lives in records (the search index reads quantities too): one home for UCUM.
__all__ = ["UCUM", "Converted", "UnitRefused", "convert", "parse_unit", "quantity_unit", "registry"]


@dataclass(frozen=True)
class Converted:
    value: float
    recorded_value: float
    recorded_unit: str


def convert(quantity: dict[str, Any], to: str, *, molar_mass: float | None = None) -> Converted:
    """The quantity's value in unit `to`; `molar_mass` (g/mol) bridges mmol/L and mg/dL for one analyte."""
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnitRefused("the value is not a number")
    recorded = quantity_unit(quantity)
    if not recorded:
        raise UnitRefused("no unit was recorded with this value")
    reg = registry()
    source = reg.Quantity(float(value), parse_unit(recorded))
    target = parse_unit(to)
    try:
        result = source.to(target)
    except pint.errors.DimensionalityError as exc:
        if molar_mass is None:
            raise UnitRefused(f"{recorded} cannot be converted to {to}") from exc
        try:
            result = _across_substance(source, target, molar_mass)
        except pint.errors.DimensionalityError as again:
            raise UnitRefused(f"{recorded} cannot be converted to {to}") from again
    return Converted(value=float(result.magnitude), recorded_value=float(value), recorded_unit=recorded)


def _across_substance(source: pint.Quantity, target: pint.Unit, molar_mass: float) -> pint.Quantity:
    mass = registry().Quantity(molar_mass, "g/mol")
    try:
        return (source * mass).to(target)
    except pint.errors.DimensionalityError:
        return (source / mass).to(target)
