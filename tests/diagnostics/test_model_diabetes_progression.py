"""The learned model: reproducible training, exact per-feature contributions, FHIR features, refusal to extrapolate."""

from __future__ import annotations

import json
import math
from datetime import date
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from diagnostics.inference import get_model, training
from diagnostics.inference.diabetes_progression import DiabetesProgression, artifact_content

AS_OF = date(2024, 6, 1)
LOINC = "http://loinc.org"
ARTIFACT = Path(training.__file__).parent / "artifacts" / training.ARTIFACT_NAME


def quantity(code: str, value: float, unit: str, *, day: str = "2024-03-01") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{code}-{day}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": f"{day}T10:00:00+00:00",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def panel(systolic: float, diastolic: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "effectiveDateTime": "2024-03-01T10:00:00+00:00",
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": systolic, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": diastolic, "code": "mm[Hg]"},
            },
        ],
    }


def inputs(**changes: Any) -> dict[str, list[dict[str, Any]]]:
    v = {
        "gender": "female",
        "age": 50,
        "bmi": 27.0,
        "sbp": 126,
        "dbp": 78,
        "tc": 190,
        "ldl": 110,
        "hdl": 50,
        "tg": 150,
        "glu": 95,
    }
    v.update(changes)
    return {
        "patient": [
            {"resourceType": "Patient", "id": "p", "gender": v["gender"], "birthDate": f"{AS_OF.year - v['age']}-01-10"}
        ],
        "bmi": [quantity("39156-5", v["bmi"], "kg/m2")],
        "blood_pressure": [panel(v["sbp"], v["dbp"])],
        "total_cholesterol": [quantity("2093-3", v["tc"], "mg/dL")],
        "ldl": [quantity("18262-6", v["ldl"], "mg/dL")],
        "hdl": [quantity("2085-9", v["hdl"], "mg/dL")],
        "triglycerides": [quantity("2571-8", v["tg"], "mg/dL")],
        "glucose": [quantity("2339-0", v["glu"], "mg/dL")],
        "diabetes": [
            {
                "resourceType": "Condition",
                "id": "dm",
                "clinicalStatus": {"coding": [{"code": "active"}]},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]},
                "onsetDateTime": "2015-01-01",
            }
        ],
    }


def run(found: dict[str, list[dict[str, Any]]]):  # type: ignore[no-untyped-def]
    return get_model("diabetes-progression").run(found, as_of=AS_OF)


def test_retraining_reproduces_the_committed_artifact_byte_for_byte():
    content = training.artifact_bytes(training.diabetes_artifact_build())
    assert training.artifact_sha256(content) == training.artifact_sha256(ARTIFACT.read_bytes())
    assert content == artifact_content()


def test_the_train_models_command_reports_its_score_and_checks_the_hash(tmp_path):
    out = StringIO()
    call_command("train_models", "--output", str(tmp_path / "a.json"), stdout=out)
    digest = training.artifact_sha256(ARTIFACT.read_bytes())
    assert (tmp_path / "a.json").read_bytes() == ARTIFACT.read_bytes()
    cv = json.loads(ARTIFACT.read_bytes())["cross_validation"]
    assert f"5-fold CV R2 {cv['r2_mean']:.3f}" in out.getvalue()
    assert f"sha256 {digest}" in out.getvalue()
    check = StringIO()
    call_command("train_models", "--check", stdout=check)
    assert check.getvalue().endswith(f"reproduced diabetes-progression.json: sha256 {digest}\n")


def test_the_check_fails_loudly_when_the_artifact_differs(tmp_path):
    (tmp_path / "a.json").write_bytes(b"{}\n")
    with pytest.raises(CommandError, match="retraining gives sha256"):
        call_command("train_models", "--check", "--output", str(tmp_path / "a.json"), stdout=StringIO())


def test_the_cross_validated_score_is_that_of_a_useful_linear_model():
    cv = json.loads(ARTIFACT.read_bytes())["cross_validation"]
    assert cv["folds"] == 5
    assert 0.45 < cv["r2_mean"] < 0.52  # published linear fits on these data explain about half the variance


def test_predictions_match_scikit_learn_and_contributions_add_up_exactly():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_diabetes(scaled=False)
    pipeline = make_pipeline(StandardScaler(), Ridge(alpha=training.ALPHA)).fit(data.data, data.target)
    result = run(inputs())
    assert result.status == "succeeded"
    # The default inputs(): female 50, BMI 27, BP 126/78, TC 190, LDL 110, HDL 50, TG 150, glucose 95.
    row = [50, 1, 27.0, (126 + 2 * 78) / 3, 190, 110, 50, 190 / 50, math.log(150), 95]
    expected = float(pipeline.predict([row])[0])
    total = sum(c.effect for c in result.contributions)
    assert abs(total - expected) < 1e-4
    assert result.outputs["progression_score"] == round(expected, 1)
    artifact = json.loads(ARTIFACT.read_bytes())
    for feature in artifact["features"]:
        contribution = next(c for c in result.contributions if c.name == feature["name"])
        x = row[[f["name"] for f in artifact["features"]].index(feature["name"])]
        exact = feature["coef"] * (x - feature["mean"]) / feature["scale"]
        assert abs(contribution.effect - exact) < 1e-6


def test_features_are_taken_from_fhir_as_documented():
    result = run(inputs(sbp=126, dbp=78, tc=190, hdl=50, tg=150, gender="male"))
    values = {c.name: c.value for c in result.contributions}
    assert values["mean_arterial_pressure"] == 94.0  # (126 + 2 x 78) / 3
    assert values["tc_hdl_ratio"] == 3.8
    assert values["log_triglycerides"] == round(math.log(150), 4)
    assert values["sex"] == 2.0  # male; female is 1
    assert values["age"] == 50.0
    assert result.outputs["artifact_sha256"] == training.artifact_sha256(ARTIFACT.read_bytes())


def test_a_feature_outside_the_training_range_is_refused_not_extrapolated():
    result = run(inputs(glu=150))
    assert result.status == "insufficient-data"
    assert result.missing == ("glucose",)
    assert result.contributions[0].rule == (
        "150 mg/dL is outside the training data's range 58-124: the model does not extrapolate"
    )


def test_missing_inputs_are_named():
    found = inputs()
    found["ldl"] = []
    found["blood_pressure"] = [quantity("85354-9", 120, "mm[Hg]")]  # a panel without components
    result = run(found)
    assert result.missing == ("blood_pressure", "ldl")
    assert result.contributions[0].rule.endswith("the panel lacks a systolic or a diastolic component")


def test_the_version_hash_follows_the_artifact():
    original = DiabetesProgression()
    changed = json.loads(artifact_content())
    changed["intercept"] += 1.0
    retrained = DiabetesProgression(training.artifact_bytes(changed))
    assert original.spec.version_hash != retrained.spec.version_hash
    assert run(inputs()).outputs["progression_score"] + 1.0 == pytest.approx(
        retrained.run(inputs(), as_of=AS_OF).outputs["progression_score"], abs=0.11
    )


def test_a_patient_without_diabetes_is_outside_the_models_population():
    found = inputs()
    found["diabetes"] = []
    result = run(found)
    assert result.status == "insufficient-data"
    assert result.reasons == [{"input": "diabetes", "kind": "excluded"}]


def test_prediabetes_is_not_diabetes_for_the_learned_model():
    found = inputs()
    found["diabetes"][0]["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "15777000"}]}
    assert run(found).reasons == [{"input": "diabetes", "kind": "excluded"}]
