"""KDIGO 2012 albuminuria categories from the urine albumin-to-creatinine ratio, at the guideline's band edges."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from diagnostics.inference import get_model
from diagnostics.inference.albuminuria import kdigo_albuminuria

AS_OF = date(2024, 6, 1)


def uacr(value: float, unit: str = "mg/g", *, code: str = "9318-7", day: str = "2024-05-20") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"uacr-{day}-{value}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": f"{day}T08:00:00+00:00",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def run(*observations: dict[str, Any], birth: str = "1960-03-01"):  # type: ignore[no-untyped-def]
    patient = {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": birth}
    return get_model("albuminuria-kdigo-2012").run({"patient": [patient], "uacr": list(observations)}, as_of=AS_OF)


@pytest.mark.parametrize(
    ("ratio", "category"),
    [(0.0, "A1"), (29.9, "A1"), (30.0, "A2"), (300.0, "A2"), (300.1, "A3"), (2500.0, "A3")],
)
def test_the_kdigo_bands_are_a1_under_30_a2_from_30_to_300_a3_above(ratio, category):
    assert kdigo_albuminuria(ratio)[0] == category


@pytest.mark.parametrize("code", ["9318-7", "14959-1", "32294-1"])
def test_each_uacr_loinc_code_is_read(code):
    result = run(uacr(45, code=code))
    assert (result.outputs["uacr_mg_g"], result.outputs["category"]) == (45.0, "A2")


def test_milligrams_per_millimole_are_converted_by_8_84():
    result = run(uacr(3.4, "mg/mmol"))
    assert result.outputs["uacr_mg_g"] == 30.1  # 3.4 x 8.84 = 30.06 mg/g
    assert result.outputs["category"] == "A2"
    assert result.summary == "Urine albumin-to-creatinine ratio 30.1 mg/g: KDIGO category A2 (moderately increased)."


def test_an_implausible_ratio_a_child_and_a_stale_ratio_are_each_refused_with_their_reason():
    assert run(uacr(-5)).reasons == [{"input": "uacr", "kind": "out-of-range", "range": [0.0, 30000.0], "unit": "mg/g"}]
    assert run(uacr(45), birth="2010-01-01").reasons == [
        {"input": "age", "kind": "out-of-range", "range": [18, 130], "unit": "years"}
    ]
    assert run(uacr(45, day="2022-01-01")).reasons == [{"input": "uacr", "kind": "stale", "window_days": 365}]


def test_a_ratio_in_an_unknown_unit_is_a_wrong_unit_reason():
    assert run(uacr(45, "g/L")).reasons == [
        {"input": "uacr", "kind": "wrong-unit", "window_days": 365, "unit": "mg/g or mg/mmol"}
    ]
