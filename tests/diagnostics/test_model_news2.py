"""NEWS2 against the RCP 2017 chart: every band boundary of every parameter, the risk bands, missing data."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from diagnostics.inference import get_model
from diagnostics.inference.news2 import News2

AS_OF = date(2024, 6, 1)
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ACVPU = {"A": "248234008", "C": "130987000", "V": "300202002", "P": "450847001", "U": "422768004"}
NORMAL = {
    "respiratory_rate": 16,
    "spo2": 98,
    "oxygen": "air",
    "systolic_bp": 120,
    "pulse": 70,
    "acvpu": "A",
    "temp": 37.0,
}


def observation(
    code: str, *, system: str = LOINC, day: str = "2024-06-01", status: str = "final", **value: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{code}-{day}",
        "status": status,
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": f"{day}T07:30:00+01:00",
        **value,
    }


def qty(code: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    return observation(
        code, valueQuantity={"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}, **extra
    )


def oxygen(kind: str) -> dict[str, Any]:
    if kind == "air":
        return observation("722742002", system=SNOMED)
    if kind == "oxygen":
        return observation("371825009", system=SNOMED)
    if kind.startswith("flow:"):
        return qty("3151-8", float(kind[5:]), "L/min")
    return qty("3150-0", float(kind[5:]), "%")  # "fio2:28"


def vitals(**changes: Any) -> dict[str, list[dict[str, Any]]]:
    v = {**NORMAL, **changes}
    return {
        "patient": [{"resourceType": "Patient", "id": "p1", "birthDate": "1960-02-03", "gender": "female"}],
        "respiratory_rate": [qty("9279-1", v["respiratory_rate"], "/min")],
        "spo2": [qty("59408-5", v["spo2"], "%")],
        "supplemental_oxygen": [oxygen(v["oxygen"])],
        "systolic_bp": [qty("8480-6", v["systolic_bp"], "mm[Hg]")],
        "pulse": [qty("8867-4", v["pulse"], "/min")],
        "consciousness": [
            observation(
                "1104441000000107",
                system=SNOMED,
                valueCodeableConcept={"coding": [{"system": SNOMED, "code": ACVPU[v["acvpu"]]}]},
            )
        ],
        "temperature": [qty("8310-5", v["temp"], "Cel")],
        "hypercapnic_respiratory_failure": [],
    }


def hypercapnic(verification: str = "confirmed") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "hcrf",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "verificationStatus": {"coding": [{"code": verification}]},
        "code": {"coding": [{"system": ICD10CM, "code": "J96.12"}]},
        "recordedDate": "2023-11-02",
    }


def run(found: dict[str, list[dict[str, Any]]]):  # type: ignore[no-untyped-def]
    return get_model("news2").run(found, as_of=AS_OF)


def points(result, name: str) -> int:  # type: ignore[no-untyped-def]
    return int(next(c.effect for c in result.contributions if c.name == name))


def test_normal_vital_signs_score_zero_and_low_risk():
    result = run(vitals())
    assert result.status == "succeeded"
    assert result.outputs == {
        "score": 0,
        "risk": "low",
        "spo2_scale": 1,
        "single_parameter_3": False,
        "response": (
            "minimum 4-12 hourly observations; registered nurse to assess and decide on frequency and escalation"
        ),
    }
    assert [c.name for c in result.contributions] == [
        "respiratory_rate",
        "spo2",
        "supplemental_oxygen",
        "systolic_bp",
        "pulse",
        "consciousness",
        "temperature",
    ]
    assert result.summary == "NEWS2 score 0: low clinical risk (SpO2 scale 1)."


@pytest.mark.parametrize(
    ("value", "expected"), [(5, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (40, 3)]
)
def test_respiration_rate_bands(value, expected):
    result = run(vitals(respiratory_rate=value))
    assert points(result, "respiratory_rate") == expected
    assert result.outputs["score"] == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(85, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
)
def test_spo2_scale_1_bands(value, expected):
    result = run(vitals(spo2=value))
    assert points(result, "spo2") == expected
    assert result.outputs["spo2_scale"] == 1


@pytest.mark.parametrize(
    ("value", "on", "expected"),
    [
        (80, "air", 3),
        (83, "air", 3),
        (84, "air", 2),
        (85, "air", 2),
        (86, "air", 1),
        (87, "air", 1),
        (88, "air", 0),
        (92, "air", 0),
        (88, "oxygen", 0),
        (92, "oxygen", 0),
        (93, "air", 0),
        (100, "air", 0),
        (93, "oxygen", 1),
        (94, "oxygen", 1),
        (95, "oxygen", 2),
        (96, "oxygen", 2),
        (97, "oxygen", 3),
        (100, "oxygen", 3),
    ],
)
def test_spo2_scale_2_bands_when_hypercapnic_respiratory_failure_is_declared(value, on, expected):
    found = vitals(spo2=value, oxygen=on)
    found["hypercapnic_respiratory_failure"] = [hypercapnic()]
    result = run(found)
    assert result.outputs["spo2_scale"] == 2
    assert points(result, "spo2") == expected
    assert "scale 2 because Condition/hcrf declares hypercapnic respiratory failure" in next(
        c.rule for c in result.contributions if c.name == "spo2"
    )


def test_scale_2_is_never_used_without_a_confirmed_declaration():
    found = vitals(spo2=88)
    found["hypercapnic_respiratory_failure"] = [hypercapnic("refuted")]
    result = run(found)
    assert result.outputs["spo2_scale"] == 1
    assert points(result, "spo2") == 3


@pytest.mark.parametrize(
    ("kind", "expected"), [("air", 0), ("oxygen", 2), ("flow:0", 0), ("flow:2", 2), ("fio2:21", 0), ("fio2:28", 2)]
)
def test_air_or_oxygen(kind, expected):
    result = run(vitals(oxygen=kind))
    assert points(result, "supplemental_oxygen") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(70, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (250, 3)],
)
def test_systolic_pressure_bands(value, expected):
    assert points(run(vitals(systolic_bp=value)), "systolic_bp") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3), (180, 3)],
)
def test_pulse_bands(value, expected):
    assert points(run(vitals(pulse=value)), "pulse") == expected


@pytest.mark.parametrize(("level", "expected"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness_acvpu(level, expected):
    assert points(run(vitals(acvpu=level)), "consciousness") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(34.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2), (41.0, 2)],
)
def test_temperature_bands(value, expected):
    assert points(run(vitals(temp=value)), "temperature") == expected


@pytest.mark.parametrize(
    ("changes", "score", "risk"),
    [
        ({}, 0, "low"),
        ({"pulse": 95}, 1, "low"),
        ({"pulse": 95, "temp": 39.5, "spo2": 95}, 4, "low"),  # 1 + 2 + 1
        ({"respiratory_rate": 25}, 3, "low-medium"),  # a single 3
        ({"acvpu": "C", "pulse": 95}, 4, "low-medium"),
        ({"oxygen": "oxygen", "respiratory_rate": 21, "pulse": 95}, 5, "medium"),  # 2 + 2 + 1
        ({"systolic_bp": 90, "pulse": 95, "spo2": 95}, 5, "medium"),  # a 3, but 5 or more outranks it
        ({"oxygen": "oxygen", "respiratory_rate": 21, "pulse": 115}, 6, "medium"),
        ({"oxygen": "oxygen", "respiratory_rate": 21, "pulse": 115, "spo2": 95}, 7, "high"),
        (
            {
                "respiratory_rate": 30,
                "spo2": 88,
                "systolic_bp": 85,
                "pulse": 140,
                "acvpu": "U",
                "temp": 34.0,
                "oxygen": "oxygen",
            },
            20,
            "high",
        ),
    ],
)
def test_clinical_risk_bands(changes, score, risk):
    result = run(vitals(**changes))
    assert (result.outputs["score"], result.outputs["risk"]) == (score, risk)


def test_values_are_rounded_half_up_to_the_charts_precision():
    assert points(run(vitals(temp=36.05)), "temperature") == 0  # 36.1
    assert points(run(vitals(temp=35.04)), "temperature") == 3  # 35.0
    assert points(run(vitals(respiratory_rate=20.5)), "respiratory_rate") == 2  # 21
    assert points(run(vitals(spo2=95.5)), "spo2") == 0  # 96


def test_fahrenheit_is_converted():
    found = vitals()
    found["temperature"] = [qty("8331-1", 100.4, "[degF]")]  # 38.0 C, oral
    result = run(found)
    assert next(c.value for c in result.contributions if c.name == "temperature") == 38.0
    assert points(result, "temperature") == 0


def test_the_latest_reading_of_the_day_wins():
    found = vitals()
    early = qty("8867-4", 140, "/min")
    late = qty("8867-4", 72, "/min")
    early["effectiveDateTime"], late["effectiveDateTime"] = "2024-06-01T05:00:00+00:00", "2024-06-01T07:00:00+00:00"
    found["pulse"] = [late, early]
    assert points(run(found), "pulse") == 0


def test_an_unrecorded_oxygen_status_is_missing_never_assumed_air():
    found = vitals()
    found["supplemental_oxygen"] = []
    result = run(found)
    assert result.status == "insufficient-data"
    assert result.missing == ("supplemental_oxygen",)
    assert result.contributions[0].rule == "no air or supplemental oxygen record is recorded"


def test_vital_signs_older_than_a_day_are_not_used():
    found = vitals()
    found["respiratory_rate"] = [qty("9279-1", 16, "/min", day="2024-05-30")]
    found["pulse"] = [qty("8867-4", 70, "/min", status="preliminary")]
    result = run(found)
    assert result.missing == ("respiratory_rate", "pulse")
    assert (
        result.contributions[0].rule
        == "the latest respiration rate is from 2024-05-30, older than the 1-day window up to the score date"
    )


def test_an_unknown_consciousness_answer_is_missing():
    found = vitals()
    found["consciousness"] = [
        observation("67775-7", valueCodeableConcept={"coding": [{"system": SNOMED, "code": "1234"}]})
    ]
    result = run(found)
    assert result.missing == ("consciousness",)
    assert result.contributions[0].rule.endswith("its answer is not an ACVPU finding (SNOMED CT)")


def test_nothing_posted_names_all_seven_parameters():
    result = run({})
    assert result.missing == (
        "patient",
        "respiratory_rate",
        "spo2",
        "supplemental_oxygen",
        "systolic_bp",
        "pulse",
        "consciousness",
        "temperature",
    )


def test_vital_signs_more_than_an_hour_before_the_newest_are_not_one_observation_set():
    found = vitals()
    found["pulse"][0]["effectiveDateTime"] = "2024-06-01T09:31:00+01:00"  # two hours and a minute after the rest
    result = run(found)
    assert result.status == "insufficient-data"
    assert result.missing == (
        "respiratory_rate",
        "spo2",
        "supplemental_oxygen",
        "systolic_bp",
        "consciousness",
        "temperature",
    )
    assert result.reasons[0] == {"input": "respiratory_rate", "kind": "stale", "window_minutes": 60}
    assert (
        "more than 60 minutes before the newest vital sign (2024-06-01T09:31:00+01:00)" in result.contributions[0].rule
    )


def test_the_observation_set_window_is_configurable():
    found = vitals()
    found["pulse"][0]["effectiveDateTime"] = "2024-06-01T09:31:00+01:00"
    assert News2(window_minutes=180).run(found, as_of=AS_OF).succeeded
    assert News2(window_minutes=180).spec.version_hash != News2().spec.version_hash


def test_a_reading_exactly_an_hour_before_the_newest_is_in_the_set():
    found = vitals()
    found["pulse"][0]["effectiveDateTime"] = "2024-06-01T08:30:00+01:00"
    assert run(found).succeeded


def test_news2_refuses_a_patient_under_16():
    found = vitals()
    found["patient"][0]["birthDate"] = "2008-06-02"  # 15 on the score date
    result = run(found)
    assert result.status == "insufficient-data"
    assert result.reasons == [{"input": "age", "kind": "out-of-range", "range": [16, 130], "unit": "years"}]


def test_news2_scores_a_patient_on_their_16th_birthday():
    found = vitals()
    found["patient"][0]["birthDate"] = "2008-06-01"
    assert run(found).succeeded


@pytest.mark.parametrize(
    ("changes", "name"), [({"pulse": 0}, "pulse"), ({"temp": 98.6}, "temperature"), ({"spo2": 9}, "spo2")]
)
def test_an_implausible_vital_sign_is_refused_with_the_range_it_broke(changes, name):
    result = run(vitals(**changes))
    assert result.missing == (name,)
    assert result.reasons[0]["kind"] == "out-of-range"
    assert "is outside what can be measured" in result.contributions[0].rule


def test_a_deployment_sets_the_observation_set_window_in_settings():
    from django.conf import settings

    from diagnostics.inference import registry

    assert settings.DIAGNOSTICS_NEWS2_WINDOW_MINUTES == 60
    default = registry.get_model("news2").spec.version_hash
    try:
        registry.configure(news2_window_minutes=180)
        found = vitals()
        found["pulse"][0]["effectiveDateTime"] = "2024-06-01T09:31:00+01:00"
        assert registry.get_model("news2").run(found, as_of=AS_OF).succeeded
        assert registry.get_model("news2").spec.version_hash != default
    finally:
        registry.configure(news2_window_minutes=settings.DIAGNOSTICS_NEWS2_WINDOW_MINUTES)
    assert registry.get_model("news2").spec.version_hash == default
