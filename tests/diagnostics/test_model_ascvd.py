"""ASCVD 10-year risk (ACC/AHA 2013 Pooled Cohort Equations) against the guideline's own numbers."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pytest

from diagnostics.inference import get_model
from diagnostics.inference.ascvd import category_of

AS_OF = date(2024, 6, 1)
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RACE_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"

# Goff et al. 2013, Table A, the worked example (age 55, TC 213, HDL 50, SBP 120 untreated, non-smoker, no
# diabetes): individual sum and 10-year risk per group.
GUIDELINE_EXAMPLE = {
    ("female", None): (-29.67, 2.1),
    ("female", "2054-5"): (86.16, 3.0),
    ("male", None): (60.69, 5.3),
    ("male", "2054-5"): (18.97, 6.1),
}
MEANS_AND_SURVIVAL = {
    ("female", None): (-29.18, 0.9665),
    ("female", "2054-5"): (86.61, 0.9533),
    ("male", None): (61.18, 0.9144),
    ("male", "2054-5"): (19.54, 0.8954),
}


def patient(gender: str = "male", *, age: int = 55, race: str | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "p1",
        "gender": gender,
        "birthDate": date(AS_OF.year - age, 1, 15).isoformat(),
        **extra,
    }
    if race:
        resource["extension"] = [
            {
                "url": RACE_URL,
                "extension": [
                    {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": race}}
                ],
            }
        ]
    return resource


def quantity(
    code: str, value: float, unit: str = "mg/dL", *, day: str = "2024-05-01", rid: str = "", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid or f"{code}-{day}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": f"{day}T09:00:00+00:00",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        **extra,
    }


def bp_panel(systolic: float, diastolic: float = 80, *, day: str = "2024-05-01") -> dict[str, Any]:
    """A blood pressure panel as Synthea writes it (55284-4 with components)."""
    return {
        "resourceType": "Observation",
        "id": f"bp-{day}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "55284-4"}]},
        "effectiveDateTime": f"{day}T09:00:00+00:00",
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": diastolic, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": systolic, "code": "mm[Hg]"},
            },
        ],
    }


def smoking(answer: str = "266919005", *, day: str = "2024-05-01") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"smoking-{day}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
        "effectiveDateTime": f"{day}T09:00:00+00:00",
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": answer}]},
    }


def condition(
    code: str, *, clinical: str = "active", verification: str | None = "confirmed", rid: str = "c1"
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"code": clinical}]},
        "code": {"coding": [{"system": SNOMED, "code": code, "display": f"condition {code}"}]},
        "onsetDateTime": "2020-01-01T00:00:00+00:00",
    }
    if verification:
        resource["verificationStatus"] = {"coding": [{"code": verification}]}
    return resource


def medication(code: str, *, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": f"med-{code}",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": f"drug {code}"}]},
        "authoredOn": "2021-03-01",
    }


def inputs(
    gender: str = "male",
    *,
    age: int = 55,
    race: str | None = None,
    tc: float = 213,
    hdl: float = 50,
    sbp: float = 120,
    smoker: str = "266919005",
    **overrides: list[dict[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    found = {
        "patient": [patient(gender, age=age, race=race)],
        "total_cholesterol": [quantity("2093-3", tc)],
        "hdl": [quantity("2085-9", hdl)],
        "systolic_bp": [bp_panel(sbp)],
        "antihypertensive": [],
        "diabetes": [],
        "smoking_status": [smoking(smoker)],
        "established_ascvd": [],
    }
    found.update(overrides)
    return found


def run(found: dict[str, list[dict[str, Any]]]):  # type: ignore[no-untyped-def]
    return get_model("ascvd-pce-2013").run(found, as_of=AS_OF)


@pytest.mark.parametrize(("group", "published"), GUIDELINE_EXAMPLE.items())
def test_the_guideline_worked_example_gives_the_published_sum_and_risk(group, published):
    sex, race = group
    published_sum, published_risk = published
    result = run(inputs(sex, race=race))
    assert result.status == "succeeded"
    # Table A prints the sum truncated to two decimals; the risk it prints follows from that sum.
    assert abs(result.outputs["individual_sum"] - published_sum) < 0.01
    assert abs(result.outputs["risk_10y_percent"] - published_risk) <= 0.1 + 1e-9


@pytest.mark.parametrize(("group", "published"), GUIDELINE_EXAMPLE.items())
def test_the_published_sum_reproduces_the_published_risk_with_our_means_and_survival(group, published):
    published_sum, published_risk = published
    mean, survival = MEANS_AND_SURVIVAL[group]
    assert round(100 * (1 - survival ** math.exp(published_sum - mean)), 1) == published_risk


def test_the_worked_example_outputs_are_pinned_to_one_decimal():
    # White male: the exact sum 60.6995 gives 5.38%, reported 5.4; Table A's 5.3% comes from its truncated 60.69.
    got = {group: run(inputs(group[0], race=group[1])).outputs["risk_10y_percent"] for group in GUIDELINE_EXAMPLE}
    assert got == {("female", None): 2.1, ("female", "2054-5"): 3.0, ("male", None): 5.4, ("male", "2054-5"): 6.1}


def test_the_white_male_example_is_borderline_and_explains_itself():
    result = run(inputs("male"))
    assert result.outputs["category"] == "borderline"
    assert result.outputs["equation"] == "white-male"
    assert result.outputs["treated_hypertension"] is False
    assert result.summary == (
        "Estimated 10-year risk of a first ASCVD event: 5.4% (borderline), by the white male Pooled Cohort Equation."
    )
    names = [c.name for c in result.contributions]
    assert names == [
        "equation",
        "age",
        "total_cholesterol",
        "age x total_cholesterol",
        "hdl",
        "age x hdl",
        "systolic_bp",
        "smoker",
        "age x smoker",
        "diabetes",
        "group_mean",
        "statin_benefit_groups",
        "data_warnings",
    ]
    assert result.outputs["statin_benefit_groups"] == "none"
    assert (
        result.outputs["data_warnings"]
        == "a single blood-pressure reading in the last year: the guideline averages two or more"
    )
    # The effects add up to ln(hazard ratio), from which the risk follows.
    log_hazard = sum(c.effect for c in result.contributions if c.effect is not None)
    assert abs(log_hazard - (result.outputs["individual_sum"] - 61.18)) < 1e-4
    assert round(100 * (1 - 0.9144 ** math.exp(log_hazard)), 1) == 5.4


def test_an_active_antihypertensive_uses_the_treated_coefficient():
    result = run(inputs("male", antihypertensive=[medication("314076")]))
    ln_age, ln_tc, ln_hdl, ln_sbp = math.log(55), math.log(213), math.log(50), math.log(120)
    by_hand = 12.344 * ln_age + 11.853 * ln_tc - 2.664 * ln_age * ln_tc - 7.990 * ln_hdl + 1.769 * ln_age * ln_hdl
    by_hand += 1.797 * ln_sbp  # treated
    assert result.outputs["treated_hypertension"] is True
    assert abs(result.outputs["individual_sum"] - by_hand) < 1e-4
    assert result.outputs["risk_10y_percent"] == round(100 * (1 - 0.9144 ** math.exp(by_hand - 61.18)), 1)
    rule = next(c.rule for c in result.contributions if c.name == "systolic_bp")
    assert "treated: active MedicationRequest/med-314076 (lisinopril 10 MG Oral Tablet (ACE inhibitor))" in rule


@pytest.mark.parametrize(
    "request_", [medication("314076", status="stopped"), medication("861007"), medication("314076", status="draft")]
)
def test_a_stopped_or_non_antihypertensive_medication_leaves_pressure_untreated(request_):
    assert run(inputs("male", antihypertensive=[request_])).outputs["treated_hypertension"] is False


def test_african_american_women_use_the_treated_interaction_with_age():
    result = run(inputs("female", race="2054-5", antihypertensive=[medication("316049")]))
    ln_age, ln_tc, ln_hdl, ln_sbp = math.log(55), math.log(213), math.log(50), math.log(120)
    by_hand = 17.114 * ln_age + 0.940 * ln_tc - 18.920 * ln_hdl + 4.475 * ln_age * ln_hdl
    by_hand += 29.291 * ln_sbp - 6.432 * ln_age * ln_sbp
    assert abs(result.outputs["individual_sum"] - by_hand) < 1e-4


@pytest.mark.parametrize("answer", ["449868002", "428041000124106", "77176002"])
def test_a_current_smoker_adds_the_smoking_terms(answer):
    result = run(inputs("male", smoker=answer))
    effects = {c.name: c.effect for c in result.contributions}
    assert effects["smoker"] == 7.837
    assert abs(effects["age x smoker"] - (-1.795 * math.log(55))) < 1e-6
    assert result.outputs["risk_10y_percent"] > 5.4


@pytest.mark.parametrize("answer", ["8517006", "266919005"])
def test_former_and_never_smokers_are_not_current_smokers(answer):
    effects = {c.name: c.effect for c in run(inputs("male", smoker=answer)).contributions}
    assert effects["smoker"] == 0.0


def test_an_unknown_smoking_status_is_missing_not_non_smoker():
    result = run(inputs("male", smoker="266927001"))
    assert result.status == "insufficient-data"
    assert result.missing == ("smoking_status",)
    assert "not a known current, former or never smoking status" in result.contributions[0].rule


def test_active_diabetes_counts_and_prediabetes_or_resolved_diabetes_do_not():
    assert {c.name: c.effect for c in run(inputs("male", diabetes=[condition("44054006")])).contributions}[
        "diabetes"
    ] == 0.658
    for record in (
        condition("15777000"),
        condition("44054006", clinical="resolved"),
        condition("44054006", verification="refuted"),
    ):
        assert {c.name: c.effect for c in run(inputs("male", diabetes=[record])).contributions}["diabetes"] == 0.0


def test_another_recorded_race_uses_the_white_equation_and_says_so():
    result = run(inputs("female", race="2028-9"))
    assert result.outputs["equation"] == "white-female"
    assert result.contributions[0].rule == (
        "female; race recorded as OMB 2028-9: the white equation, as the guideline advises for other groups"
    )


@pytest.mark.parametrize(("age", "ok"), [(39, False), (40, True), (79, True), (80, False)])
def test_ages_outside_40_to_79_are_insufficient(age, ok):
    result = run(inputs("male", age=age))
    assert result.status == ("succeeded" if ok else "insufficient-data")
    if not ok:
        assert result.missing == ("age",)
        assert result.outputs == {}
        assert result.contributions[0].rule == f"{age} years is outside the ages the equations are for (40-79 years)"
        assert result.reasons == [{"input": "age", "kind": "out-of-range", "range": [40, 79], "unit": "years"}]


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("tc", 129, False),
        ("tc", 130, True),
        ("tc", 320, True),
        ("tc", 321, False),
        ("hdl", 19, False),
        ("hdl", 20, True),
        ("hdl", 100, True),
        ("hdl", 101, False),
        ("sbp", 89, False),
        ("sbp", 90, True),
        ("sbp", 200, True),
        ("sbp", 201, False),
    ],
)
def test_values_outside_the_validated_ranges_are_insufficient_never_clamped(field, value, ok):
    result = run(inputs("male", **{field: value}))
    name = {"tc": "total_cholesterol", "hdl": "hdl", "sbp": "systolic_bp"}[field]
    assert result.status == ("succeeded" if ok else "insufficient-data")
    if not ok:
        assert result.missing == (name,)
        assert result.contributions[0].value == value
        assert "outside the range the equations were derived on" in result.contributions[0].rule


def test_every_missing_input_is_named_at_once():
    result = run({"patient": [patient("male")], "antihypertensive": [], "diabetes": []})
    assert result.status == "insufficient-data"
    assert result.missing == ("total_cholesterol", "hdl", "systolic_bp", "smoking_status")
    assert result.summary == (
        "10-year ASCVD risk (ACC/AHA 2013 Pooled Cohort Equations) was not computed: total cholesterol, hdl, "
        "systolic bp, smoking status (see the reasons)."
    )


@pytest.mark.parametrize(
    ("patient_resource", "missing"),
    [
        (None, ("patient",)),
        (patient("unknown"), ("sex",)),
        ({"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1969"}, ("age",)),
        (patient("male", deceasedDateTime="2024-01-01"), ("patient",)),
    ],
)
def test_patient_facts_are_never_guessed(patient_resource, missing):
    result = run(inputs("male", patient=[patient_resource] if patient_resource else []))
    assert result.status == "insufficient-data"
    assert result.missing == missing


def test_established_ascvd_stops_the_primary_prevention_score():
    result = run(inputs("male", established_ascvd=[condition("22298006", rid="mi")]))
    assert result.status == "insufficient-data"
    assert result.missing == ("established_ascvd",)
    assert "equations are for primary prevention" in result.contributions[0].rule


def test_the_latest_value_within_lookback_wins_and_future_or_stale_ones_are_ignored():
    tc = [
        quantity("2093-3", 180, day="2023-01-10"),
        quantity("2093-3", 213, day="2024-05-01"),
        quantity("2093-3", 300, day="2024-07-01"),  # after the score date
    ]
    result = run(inputs("male", total_cholesterol=tc))
    assert next(c.value for c in result.contributions if c.name == "total_cholesterol") == 213
    stale = run(inputs("male", total_cholesterol=[quantity("2093-3", 213, day="2020-01-01")]))
    assert stale.missing == ("total_cholesterol",)
    assert stale.contributions[0].rule == (
        "the latest total cholesterol is from 2020-01-01, older than the 1095-day window up to the score date"
    )
    assert stale.reasons == [{"input": "total_cholesterol", "kind": "stale", "window_days": 1095}]


def test_units_are_converted_or_refused():
    in_mmol = run(inputs("male", total_cholesterol=[quantity("2093-3", 5.508, "mmol/L")]))
    assert in_mmol.outputs["risk_10y_percent"] == 5.4
    found = inputs("male")
    found["hdl"] = [quantity("2085-9", 0.5, "g/L")]
    wrong = run(found)
    assert wrong.missing == ("hdl",)
    assert wrong.contributions[0].rule.endswith("its unit 'g/L' is not mg/dL or mmol/L")


def test_an_entered_in_error_observation_is_not_used():
    bad = quantity("2093-3", 213, status="entered-in-error")
    assert run(inputs("male", total_cholesterol=[bad])).missing == ("total_cholesterol",)


@pytest.mark.parametrize(
    ("percent", "category"),
    [
        (0.0, "low"),
        (4.9, "low"),
        (5.0, "borderline"),
        (7.4, "borderline"),
        (7.5, "intermediate"),
        (19.9, "intermediate"),
        (20.0, "high"),
    ],
)
def test_risk_categories_follow_the_2018_guideline(percent, category):
    assert category_of(percent) == category
