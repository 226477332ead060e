"""The units seam: pint, taught the UCUM atoms FHIR records use; one home for reading a UCUM code.

The portal converts quantities for its charts with it, and the search index brings every
recorded Quantity to its base units with it (records.fhir.quantity), so `value-quantity`
compares 5.4 mmol/L with 97 mg/dL's kin only where the dimension agrees.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import pint

from healthledger.errors import HealthLedgerError

UCUM = "http://unitsofmeasure.org"

# UCUM's bracketed atoms (and the few plain ones pint spells otherwise), as pint definitions.
_UCUM_ATOMS: dict[str, tuple[str, str]] = {
    "[lb_av]": ("ucum_lb_av", "pound"),
    "[oz_av]": ("ucum_oz_av", "ounce"),
    "[in_i]": ("ucum_in_i", "inch"),
    "[ft_i]": ("ucum_ft_i", "foot"),
    "[degF]": ("ucum_degF", "degree_Fahrenheit"),
    "mm[Hg]": ("ucum_mm_Hg", "millimeter_Hg"),
    "[iU]": ("ucum_iU", "ucum_international_unit"),
    "[IU]": ("ucum_IU", "ucum_international_unit"),
    "Cel": ("ucum_Cel", "degree_Celsius"),
}
_ANNOTATION = re.compile(r"/?\{[^}]*\}")  # UCUM annotations ({1.73_m2}, {beats}) are 1: they carry no dimension
_EXPONENT = re.compile(r"(?<=[A-Za-z_\]])(-?\d+)")  # UCUM writes m2 for m², s-1 for 1/s


class UnitRefused(HealthLedgerError):
    """A recorded quantity that cannot be expressed in the wanted unit (no unit, unknown unit, other dimension)."""


@lru_cache(maxsize=1)
def registry() -> pint.UnitRegistry:  # type: ignore[type-arg]
    reg: pint.UnitRegistry = pint.UnitRegistry(  # type: ignore[type-arg]
        autoconvert_offset_to_baseunit=True
    )
    reg.define("ucum_international_unit = [international_unit]")
    for name, canonical in _UCUM_ATOMS.values():
        if canonical.startswith("degree_"):
            # An alias, not a new unit: Celsius and Fahrenheit keep their offsets.
            reg.define(f"@alias {canonical} = {name}")
        else:
            reg.define(f"{name} = {canonical}")
    return reg


def _pint_expression(ucum: str) -> str:
    text = _ANNOTATION.sub("", ucum.strip())
    for atom, (name, _) in sorted(_UCUM_ATOMS.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(atom, name)
    if "[" in text or "{" in text:
        raise UnitRefused(f"the unit {ucum!r} is not one this server knows")
    text = text.replace("10*", "10**").replace(".", "*")
    text = _EXPONENT.sub(r"**\1", text)
    if text.startswith("/"):
        text = "1" + text
    return text or "dimensionless"


@lru_cache(maxsize=256)
def parse_unit(ucum: str) -> pint.Unit:
    """A UCUM unit code as a pint unit (UnitRefused when pint cannot read it)."""
    expression = _pint_expression(ucum)
    try:
        return registry().parse_units(expression)
    except (pint.errors.PintError, AttributeError, TypeError, ValueError, SyntaxError) as exc:
        raise UnitRefused(f"the unit {ucum!r} is not one this server knows") from exc


def quantity_unit(quantity: dict[str, Any]) -> str:
    """The unit a Quantity was recorded in: its UCUM code, else its printed unit."""
    if quantity.get("system") == UCUM and isinstance(quantity.get("code"), str):
        return str(quantity["code"])
    for key in ("code", "unit"):
        if isinstance(quantity.get(key), str) and quantity[key].strip():
            return str(quantity[key])
    return ""


@lru_cache(maxsize=1024)
def to_base(value: float, ucum: str) -> tuple[float, str]:
    """`value` `ucum` in base units: (magnitude, the base unit's name); UnitRefused when the unit is unknown."""
    unit = parse_unit(ucum)
    try:
        base = registry().Quantity(value, unit).to_base_units()
    except (pint.errors.PintError, OverflowError, ValueError) as exc:
        raise UnitRefused(f"the unit {ucum!r} cannot be brought to base units") from exc
    return float(base.magnitude), str(base.units)
