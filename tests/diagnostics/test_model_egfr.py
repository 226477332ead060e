"""eGFR by the race-free CKD-EPI 2021 creatinine equation (Inker et al., NEJM 2021) and the KDIGO G stage."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from diagnostics.inference import get_model
from diagnostics.inference.egfr import kdigo_stage

AS_OF = date(2024, 6, 1)
LOINC = "http://loinc.org"


def patient(gender: str, age: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "gender": gender,
        "birthDate": date(AS_OF.year - age, 1, 15).isoformat(),
    }


def creatinine(value: float, unit: str = "mg/dL", *, code: str = "2160-0", day: str = "2024-05-20") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"scr-{day}-{value}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": f"{day}T08:00:00+00:00",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def run(gender: str, age: int, *observations: dict[str, Any]):  # type: ignore[no-untyped-def]
    return get_model("egfr-ckd-epi-2021").run(
        {"patient": [patient(gender, age)], "creatinine": list(observations)}, as_of=AS_OF
    )


def by_hand(scr: float, age: int, female: bool) -> float:
    """The paper's equation written out again, term by term."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    value = 142 * min(scr / kappa, 1) ** alpha * max(scr / kappa, 1) ** -1.200 * 0.9938**age
    return value * 1.012 if female else value


def test_a_50_year_old_woman_with_creatinine_1_0_has_an_egfr_of_69():
    # 142 x (1.0/0.7)^-1.200 x 0.9938^50 x 1.012 = 142 x 0.651805 x 0.732740 x 1.012 = 68.633
    result = run("female", 50, creatinine(1.0))
    assert result.status == "succeeded"
    assert result.outputs["egfr_unrounded"] == 68.63
    assert result.outputs["egfr_ml_min_1_73m2"] == 69
    assert result.outputs["stage"] == "G2"
    assert result.summary == "Estimated GFR 69 mL/min/1.73 m2 (CKD-EPI 2021), KDIGO category G2 (mildly decreased)."


@pytest.mark.parametrize(
    ("gender", "age", "scr"),
    [
        ("male", 60, 0.8),
        ("male", 60, 0.9),
        ("male", 45, 1.4),
        ("female", 30, 0.5),
        ("female", 70, 0.7),
        ("female", 80, 2.5),
    ],
)
def test_the_model_follows_the_papers_equation_on_both_sides_of_kappa(gender, age, scr):
    result = run(gender, age, creatinine(scr))
    assert result.outputs["egfr_unrounded"] == round(by_hand(scr, age, gender == "female"), 2)


def test_the_contributions_multiply_out_to_the_estimate():
    result = run("male", 60, creatinine(1.3))
    product = 1.0
    for contribution in result.contributions:
        if contribution.effect is not None:
            product *= contribution.effect
    assert abs(product - by_hand(1.3, 60, False)) < 1e-3
    assert [c.name for c in result.contributions] == ["constant", "creatinine", "age", "sex", "stage"]


def test_micromoles_per_litre_are_converted_by_88_4():
    assert run("female", 50, creatinine(88.4, "umol/L")).outputs["egfr_unrounded"] == 68.63


def test_synthea_creatinine_code_38483_4_is_accepted():
    assert run("female", 50, creatinine(1.0, code="38483-4")).outputs["egfr_ml_min_1_73m2"] == 69


@pytest.mark.parametrize(
    ("reported", "stage"),
    [
        (120, "G1"),
        (90, "G1"),
        (89, "G2"),
        (60, "G2"),
        (59, "G3a"),
        (45, "G3a"),
        (44, "G3b"),
        (30, "G3b"),
        (29, "G4"),
        (15, "G4"),
        (14, "G5"),
        (0, "G5"),
    ],
)
def test_every_kdigo_stage_boundary(reported, stage):
    assert kdigo_stage(reported)[0] == stage


def _creatinine_for(target: float, age: int) -> float:
    """The female creatinine (above kappa) whose eGFR is `target`: the equation solved for Scr."""
    return 0.7 * (target / (142 * 0.9938**age * 1.012)) ** (1 / -1.200)


@pytest.mark.parametrize(
    ("target", "reported", "stage"),
    [
        (89.6, 90, "G1"),
        (89.4, 89, "G2"),
        (59.6, 60, "G2"),
        (59.4, 59, "G3a"),
        (44.4, 44, "G3b"),
        (14.6, 15, "G4"),
        (14.4, 14, "G5"),
    ],
)
def test_stages_are_read_on_the_reported_whole_number(target, reported, stage):
    result = run("female", 40, creatinine(_creatinine_for(target, 40)))
    assert result.outputs["egfr_ml_min_1_73m2"] == reported
    assert result.outputs["stage"] == stage


@pytest.mark.parametrize(
    ("gender", "age", "observations", "missing"),
    [
        ("female", 50, [], ("creatinine",)),
        ("female", 50, [creatinine(1.0, day="2023-05-01")], ("creatinine",)),  # older than a year
        ("female", 50, [creatinine(1.0, day="2024-06-02")], ("creatinine",)),  # after the score date
        ("female", 50, [creatinine(0.09, "mmol/L")], ("creatinine",)),
        ("female", 50, [creatinine(0)], ("creatinine",)),
        ("female", 17, [creatinine(0.7)], ("age",)),
        ("other", 50, [creatinine(1.0)], ("sex",)),
    ],
)
def test_insufficient_data_names_what_is_missing(gender, age, observations, missing):
    result = run(gender, age, *observations)
    assert result.status == "insufficient-data"
    assert result.missing == missing
    assert result.outputs == {}


def test_a_stale_creatinine_says_why_it_was_not_used():
    result = run("female", 50, creatinine(1.0, day="2023-05-01"))
    assert result.contributions[0].rule == (
        "the latest serum creatinine is from 2023-05-01, older than the 365-day window up to the score date"
    )


def test_the_latest_creatinine_wins():
    result = run("male", 60, creatinine(2.0, day="2024-01-10"), creatinine(1.0, day="2024-05-30"))
    assert result.outputs["creatinine_mg_dl"] == 1.0


def test_creatinine_in_micromoles_under_loinc_14682_9_is_read():
    result = run("female", 50, creatinine(88.4, "umol/L", code="14682-9"))
    assert result.outputs["egfr_ml_min_1_73m2"] == 69  # the same as 1.0 mg/dL
    assert run("female", 50, creatinine(88.4, "µmol/L", code="14682-9")).outputs["egfr_ml_min_1_73m2"] == 69


def test_an_implausible_creatinine_is_refused_with_the_range_it_broke():
    result = run("female", 50, creatinine(0.01))
    assert result.status == "insufficient-data"
    assert result.reasons == [{"input": "creatinine", "kind": "out-of-range", "range": [0.2, 20.0], "unit": "mg/dL"}]
    assert result.contributions[0].rule == ("0.01 mg/dL is outside what a serum creatinine can be (0.2-20 mg/dL)")


def test_a_creatinine_in_an_unknown_unit_is_a_wrong_unit_reason():
    result = run("male", 50, creatinine(1.0, "g/L"))
    assert result.reasons == [
        {"input": "creatinine", "kind": "wrong-unit", "window_days": 365, "unit": "mg/dL or umol/L"}
    ]


def test_a_child_gets_no_egfr_from_the_adult_equation():
    result = run("male", 17, creatinine(0.6))
    assert result.reasons == [{"input": "age", "kind": "out-of-range", "range": [18, 120], "unit": "years"}]
