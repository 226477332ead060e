"""The demo FHIR generator behind `seed_demo`: valid R4, deterministic, clinically coded."""

from __future__ import annotations

import json
import random
from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from records.demo import DEMO_PATIENT_SEED, generate_patient_bundle


def _resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def _observations(bundle: dict[str, Any], loinc: str) -> list[dict[str, Any]]:
    return [r for r in _resources(bundle, "Observation") if r["code"]["coding"][0]["code"] == loinc]


def _codes(resources: list[dict[str, Any]], element: str) -> set[str]:
    return {coding["code"] for r in resources for coding in r[element]["coding"]}


@pytest.mark.parametrize("seed", [DEMO_PATIENT_SEED, 0, 1, 2, 3])
def test_every_resource_of_a_demo_bundle_validates_as_fhir_r4b(seed: int) -> None:
    bundle = generate_patient_bundle(seed)

    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    get_fhir_model_class("Bundle").model_validate(bundle)


def test_the_same_seed_gives_the_same_bytes_whatever_the_global_random_state() -> None:
    random.seed(1)
    first = json.dumps(generate_patient_bundle(DEMO_PATIENT_SEED)).encode()
    random.seed(2)
    second = json.dumps(generate_patient_bundle(DEMO_PATIENT_SEED)).encode()

    assert first == second


def test_different_seeds_give_different_patients_with_different_ids() -> None:
    one, two = generate_patient_bundle(1), generate_patient_bundle(2)

    ids_one = {e["resource"]["id"] for e in one["entry"]}
    ids_two = {e["resource"]["id"] for e in two["entry"]}
    assert ids_one.isdisjoint(ids_two)
    assert len(ids_one) == len(one["entry"])


def test_a_bundle_is_a_transaction_of_posts_whose_references_all_resolve_inside_it() -> None:
    bundle = generate_patient_bundle(DEMO_PATIENT_SEED)
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    references: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str):
                references.add(node["reference"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect([e["resource"] for e in bundle["entry"]])
    assert bundle["type"] == "transaction"
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in bundle["entry"])
    assert {(e["request"]["method"], e["request"]["url"]) for e in bundle["entry"]} == {
        ("POST", e["resource"]["resourceType"]) for e in bundle["entry"]
    }
    assert references
    assert references <= full_urls


def test_every_bundle_carries_vital_signs_lipid_and_metabolic_panels_and_smoking_status() -> None:
    expected = {
        "85354-9", "8867-4", "9279-1", "8310-5", "29463-7", "8302-2", "39156-5", "59408-5",  # vital signs
        "2093-3", "2085-9", "18262-6", "2571-8",  # lipid panel
        "2339-0", "2160-0", "4548-4",  # metabolic panel
        "72166-2",  # smoking status
    }  # fmt: skip
    for seed in range(6):
        observations = _resources(generate_patient_bundle(seed), "Observation")
        assert _codes(observations, "code") == expected
        categories = {r["category"][0]["coding"][0]["code"] for r in observations}
        assert categories == {"vital-signs", "laboratory", "social-history"}


def test_blood_pressure_is_a_panel_of_systolic_and_diastolic_components_in_mm_hg() -> None:
    panels = _observations(generate_patient_bundle(DEMO_PATIENT_SEED), "85354-9")

    assert len(panels) == 10
    for panel in panels:
        assert [c["code"]["coding"][0]["code"] for c in panel["component"]] == ["8480-6", "8462-4"]
        assert {c["valueQuantity"]["code"] for c in panel["component"]} == {"mm[Hg]"}
        assert {c["valueQuantity"]["system"] for c in panel["component"]} == {"http://unitsofmeasure.org"}


def test_quantities_use_ucum_units() -> None:
    bundle = generate_patient_bundle(DEMO_PATIENT_SEED)
    units = {
        "8867-4": "/min", "9279-1": "/min", "8310-5": "Cel", "29463-7": "kg", "8302-2": "cm", "39156-5": "kg/m2",
        "59408-5": "%", "2093-3": "mg/dL", "2085-9": "mg/dL", "18262-6": "mg/dL", "2571-8": "mg/dL",
        "2339-0": "mg/dL", "2160-0": "mg/dL", "4548-4": "%",
    }  # fmt: skip
    for loinc, unit in units.items():
        quantities = [o["valueQuantity"] for o in _observations(bundle, loinc)]
        assert quantities
        assert {(q["system"], q["code"], q["unit"]) for q in quantities} == {("http://unitsofmeasure.org", unit, unit)}


def test_the_demo_patient_has_three_chronic_conditions_each_treated_with_its_drug() -> None:
    bundle = generate_patient_bundle(DEMO_PATIENT_SEED)
    conditions = _resources(bundle, "Condition")
    requests = _resources(bundle, "MedicationRequest")

    assert _codes(conditions, "code") == {"38341003", "44054006", "55822004"}
    assert {c["system"] for r in conditions for c in r["code"]["coding"]} == {"http://snomed.info/sct"}
    assert _codes(requests, "medicationCodeableConcept") == {"314076", "861007", "617310"}
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    treated = {
        by_url[r["reasonReference"][0]["reference"]]["code"]["coding"][0]["code"]: r["medicationCodeableConcept"][
            "coding"
        ][0]["code"]
        for r in requests
    }
    assert treated == {"38341003": "314076", "44054006": "861007", "55822004": "617310"}


def test_values_rise_to_the_diagnosis_and_fall_once_treatment_starts() -> None:
    bundle = generate_patient_bundle(DEMO_PATIENT_SEED)
    onset = {r["code"]["coding"][0]["code"]: r["onsetDateTime"] for r in _resources(bundle, "Condition")}

    def series(loinc: str) -> list[tuple[str, float]]:
        return sorted((o["effectiveDateTime"], o["valueQuantity"]["value"]) for o in _observations(bundle, loinc))

    systolic = sorted(
        (p["effectiveDateTime"], p["component"][0]["valueQuantity"]["value"]) for p in _observations(bundle, "85354-9")
    )
    for values, code, threshold in (
        (systolic, "38341003", 135),
        (series("4548-4"), "44054006", 6.5),
        (series("2093-3"), "55822004", 230),
    ):
        at_diagnosis = dict(values)[onset[code]]
        after = [value for when, value in values if when > onset[code]]
        assert at_diagnosis >= threshold
        assert max(value for when, value in values if when != onset[code]) < at_diagnosis
        assert after[-1] < threshold


def test_years_sets_the_number_of_twice_yearly_checkups_ending_at_the_anchor() -> None:
    bundle = generate_patient_bundle(5, years=2, end=date(2020, 3, 31))
    starts = sorted(r["period"]["start"] for r in _resources(bundle, "Encounter"))

    assert len(starts) == 4
    assert starts[-1][:10] <= "2020-03-31"
    assert starts[0][:10] >= "2018-03-01"


def test_fewer_than_one_year_is_refused() -> None:
    with pytest.raises(ValueError, match="years must be at least 1"):
        generate_patient_bundle(1, years=0)
