"""Diabetes disease progression: the learned model, predicted from its JSON artifact.

The artifact (artifacts/diabetes-progression.json, written by `manage.py
train_models`, see training.py) holds a ridge regression trained on the
scikit-learn diabetes data set (Efron et al. 2004). A prediction is

    score = intercept + sum_i coef_i x (x_i - mean_i) / scale_i

so each feature's contribution is exact: coef_i x (x_i - mean_i) / scale_i,
relative to the average patient of the training data (the intercept).

The data set's columns and where each comes from in FHIR (latest value within
a year before the score date unless said otherwise):

| column | input | FHIR | unit / conversion |
|---|---|---|---|
| age | age | Patient.birthDate | years at the score date |
| sex | sex | Patient.gender | female = 1, male = 2 (see below) |
| bmi | bmi | LOINC 39156-5 | kg/m2 |
| bp | mean_arterial_pressure | panel 85354-9 or 55284-4 | (systolic 8480-6 + 2 x diastolic 8462-4) / 3, mm Hg |
| s1 | total_cholesterol | LOINC 2093-3 | mg/dL (mmol/L x 38.67) |
| s2 | ldl | LOINC 18262-6 or 13457-7 | mg/dL (mmol/L x 38.67) |
| s3 | hdl | LOINC 2085-9 | mg/dL (mmol/L x 38.67) |
| s4 | tc_hdl_ratio | from s1 and s3 | total cholesterol / HDL |
| s5 | log_triglycerides | LOINC 2571-8 | ln(triglycerides in mg/dL) (mmol/L x 88.57) |
| s6 | glucose | LOINC 2339-0 or 2345-7 | mg/dL (mmol/L x 18.016) |

Systolic and diastolic pressure must come from the same panel (one measurement).
The data set does not document its sex coding (1 or 2). Group 1 has the higher
mean HDL (54.4 vs 44.6 mg/dL) and lower LDL, the known female pattern, so
1 = female and 2 = male. Its s5 spans 3.26-6.11, the natural log of
triglycerides of 26-450 mg/dL. A value outside the range a feature spans in the
training data is not extrapolated: the result is insufficient-data naming it.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from diagnostics.inference import base, training, values
from diagnostics.inference.base import Contribution, InputSpec, ModelResult, ModelSpec
from diagnostics.inference.values import Absent, Reading, loinc
from diagnostics.inference.valueset import value_set

MODEL_ID = training.MODEL_ID
VERSION = "1.0.0"
TITLE = "Diabetes disease progression at one year (ridge regression, Efron et al. 2004 data)"
OUTPUT_CODE = "https://healthledger.invalid/fhir/CodeSystem/diagnostic-models|diabetes-progression-1y"

LOOKBACK_DAYS = 365
CHOLESTEROL = {"mg/dL": values.same, "mmol/L": lambda v: v * 38.67}
TRIGLYCERIDES = {"mg/dL": values.same, "mmol/L": lambda v: v * 88.57}
GLUCOSE = {"mg/dL": values.same, "mmol/L": lambda v: v * 18.016}
BMI = {"kg/m2": values.same, "kg/m^2": values.same}
PRESSURE = {"mm[Hg]": values.same, "mmHg": values.same}
SEX_CODES = {"female": 1.0, "male": 2.0}
BP_PANELS = (loinc("85354-9"), loinc("55284-4"))
SYSTOLIC, DIASTOLIC = loinc("8480-6"), loinc("8462-4")

INPUTS = (
    InputSpec("patient", "Patient", (), None),
    InputSpec("bmi", "Observation", (loinc("39156-5"),), LOOKBACK_DAYS),
    InputSpec("blood_pressure", "Observation", BP_PANELS, LOOKBACK_DAYS),
    InputSpec("total_cholesterol", "Observation", (loinc("2093-3"),), LOOKBACK_DAYS),
    InputSpec("ldl", "Observation", (loinc("18262-6"), loinc("13457-7")), LOOKBACK_DAYS),
    InputSpec("hdl", "Observation", (loinc("2085-9"),), LOOKBACK_DAYS),
    InputSpec("triglycerides", "Observation", (loinc("2571-8"),), LOOKBACK_DAYS),
    InputSpec("glucose", "Observation", (loinc("2339-0"), loinc("2345-7")), LOOKBACK_DAYS),
    # The study enrolled people with diabetes: without an active diabetes diagnosis the model does not apply.
    InputSpec("diabetes", "Condition", (), None, value_set="diabetes"),
)

# Observation inputs: (reader, what) in the order they are asked for.
READERS: dict[str, tuple[Any, str]] = {
    "bmi": (values.quantity_reader(BMI, "kg/m2"), "body mass index"),
    "total_cholesterol": (values.quantity_reader(CHOLESTEROL, "mg/dL or mmol/L"), "total cholesterol"),
    "ldl": (values.quantity_reader(CHOLESTEROL, "mg/dL or mmol/L"), "LDL cholesterol"),
    "hdl": (values.quantity_reader(CHOLESTEROL, "mg/dL or mmol/L"), "HDL cholesterol"),
    "triglycerides": (values.quantity_reader(TRIGLYCERIDES, "mg/dL or mmol/L"), "triglycerides"),
    "glucose": (values.quantity_reader(GLUCOSE, "mg/dL or mmol/L"), "glucose"),
}


@cache
def artifact_content() -> bytes:
    """The committed artifact's bytes (packaged with the code)."""
    return (resources.files("diagnostics.inference") / "artifacts" / training.ARTIFACT_NAME).read_bytes()


def _mean_arterial_pressure(node: dict[str, Any]) -> float:
    parts: dict[str, float] = {}
    read = values.quantity_reader(PRESSURE, "mm[Hg]")
    for component in node.get("component") or ():
        token = values.first_match(component.get("code") if type(component) is dict else None, (SYSTOLIC, DIASTOLIC))
        if token is not None:
            parts[token] = read(component)
    if SYSTOLIC not in parts or DIASTOLIC not in parts:
        raise values.Unusable("the panel lacks a systolic or a diastolic component")
    return (parts[SYSTOLIC] + 2.0 * parts[DIASTOLIC]) / 3.0


class DiabetesProgression:
    """Ridge regression from the artifact; one contribution per feature, plus the training mean."""

    def __init__(self, content: bytes | None = None) -> None:
        self.content = artifact_content() if content is None else content
        self.artifact: dict[str, Any] = json.loads(self.content)
        if self.artifact.get("model") != MODEL_ID or self.artifact.get("format") != training.ARTIFACT_FORMAT:
            raise ValueError("not a diabetes-progression artifact of a known format")
        self.artifact_sha256 = training.artifact_sha256(self.content)
        self.features: list[dict[str, Any]] = self.artifact["features"]
        self.spec = ModelSpec(
            id=MODEL_ID,
            version=VERSION,
            version_hash=base.version_hash(
                model_id=MODEL_ID,
                version=VERSION,
                parameters={"artifact_sha256": self.artifact_sha256, "inputs": [vars(i) for i in INPUTS]},
                modules=[sys.modules[__name__], base, values],
            ),
            title=TITLE,
            intended_use=(
                "Predicts, for an adult with diabetes, a quantitative measure of disease progression one year ahead "
                "on the scale of the 2004 study data it was trained on (442 patients; cross-validated R2 about "
                f"{self.artifact['cross_validation']['r2_mean']:.2f}). It demonstrates an explainable learned model: "
                "a score to discuss, not a validated clinical prediction, and only within the ranges of its training "
                f"data. {base.DECISION_SUPPORT}"
            ),
            purpose="TREAT",
            inputs=INPUTS,
            output_code=OUTPUT_CODE,
            population=(
                "Adults with an active diabetes diagnosis whose inputs lie within the ranges of the 442 patients "
                "it was trained on (fasting glucose up to the training maximum: most diabetics fall outside)."
            ),
        )

    def run(self, inputs: Mapping[str, Sequence[dict[str, Any]]], *, as_of: date) -> ModelResult:
        problems: list[Contribution] = []
        found: dict[str, float] = {}
        sources: dict[str, Reading] = {}
        self._patient(inputs, as_of, found, problems)
        diagnosed = values.matching_condition(
            inputs.get("diabetes", ()), match=value_set("diabetes").match, as_of=as_of
        )
        if diagnosed is None:
            problems.append(
                Contribution(
                    "diabetes",
                    None,
                    None,
                    "no active diabetes diagnosis on record (prediabetes does not count): the model was trained on "
                    "people with diabetes only",
                    kind="excluded",
                )
            )
        for name, (read, what) in (
            ("blood_pressure", (_mean_arterial_pressure, "blood pressure panel")),
            *READERS.items(),
        ):
            spec = self.spec.input(name)
            reading = values.latest_observation(
                inputs.get(name, ()),
                codes=spec.codes,
                as_of=as_of,
                lookback_days=spec.lookback_days,
                read=read,
                what=what,
            )
            if isinstance(reading, Absent):
                problems.append(values.problem(name, reading))
            elif reading.value <= 0:
                problems.append(
                    Contribution(
                        name, reading.value, None, f"a {what} of zero or less is not a measurement", kind="out-of-range"
                    )
                )
            else:
                sources[name] = reading
        if problems:
            return base.insufficient(TITLE, problems)
        found["mean_arterial_pressure"] = sources["blood_pressure"].value
        for name in ("bmi", "total_cholesterol", "ldl", "hdl", "glucose"):
            found[name] = sources[name].value
        found["tc_hdl_ratio"] = sources["total_cholesterol"].value / sources["hdl"].value
        found["log_triglycerides"] = math.log(sources["triglycerides"].value)
        sources["mean_arterial_pressure"] = sources["blood_pressure"]
        sources["log_triglycerides"] = sources["triglycerides"]
        return self._predict(found, sources)

    def _patient(
        self,
        inputs: Mapping[str, Sequence[dict[str, Any]]],
        as_of: date,
        found: dict[str, float],
        problems: list[Contribution],
    ) -> None:
        patient = values.the_patient(inputs.get("patient", ()))
        if isinstance(patient, Absent):
            problems.append(values.problem("patient", patient))
            return
        if values.deceased_by(patient, as_of):
            problems.append(values.problem("patient", values.DECEASED))
            return
        age, sex = values.age_at(patient, as_of), values.sex_of(patient)
        if isinstance(age, Absent):
            problems.append(values.problem("age", age))
        else:
            found["age"] = float(age)
        if isinstance(sex, Absent):
            problems.append(values.problem("sex", sex))
        else:
            found["sex"] = SEX_CODES[sex]

    def _predict(self, found: dict[str, float], sources: dict[str, Reading]) -> ModelResult:
        problems = [
            Contribution(
                feature["name"],
                round(found[feature["name"]], 3),
                None,
                f"{found[feature['name']]:.4g} {feature['unit']} is outside the training data's range "
                f"{feature['min']:g}-{feature['max']:g}: the model does not extrapolate",
                kind="out-of-range",
                low=feature["min"],
                high=feature["max"],
                unit=feature["unit"],
            )
            for feature in self.features
            if not feature["min"] <= found[feature["name"]] <= feature["max"]
        ]
        if problems:
            return base.insufficient(TITLE, problems)
        intercept = float(self.artifact["intercept"])
        contributions = [
            Contribution(
                "training_mean", intercept, intercept, "the prediction for the training data's average patient"
            )
        ]
        for feature in self.features:
            name, value = feature["name"], found[feature["name"]]
            effect = feature["coef"] * (value - feature["mean"]) / feature["scale"]
            origin = f" from {sources[name].source} ({sources[name].day})" if name in sources else ""
            if name == "tc_hdl_ratio":
                origin = " from the total cholesterol and HDL above"
            contributions.append(
                Contribution(
                    name,
                    round(value, 4),
                    round(effect, 6),
                    f"{value:.4g} {feature['unit']}{origin}; training mean {feature['mean']:.4g}: "
                    f"{feature['coef']:+.4g} x ({value:.4g} - {feature['mean']:.4g}) / {feature['scale']:.4g}",
                )
            )
        score = sum(c.effect or 0.0 for c in contributions)
        dataset = self.artifact["dataset"]
        r2 = self.artifact["cross_validation"]["r2_mean"]
        return ModelResult(
            status=base.SUCCEEDED,
            outputs={
                "progression_score": round(score, 1),
                "training_mean": round(dataset["target_mean"], 1),
                "training_range": [dataset["target_min"], dataset["target_max"]],
                "cv_r2": round(r2, 3),
                "artifact_sha256": self.artifact_sha256,
            },
            contributions=tuple(contributions),
            missing=(),
            summary=(
                f"Predicted one-year diabetes progression score {score:.1f} (training mean "
                f"{dataset['target_mean']:.1f}, range {dataset['target_min']:g}-{dataset['target_max']:g}; "
                f"cross-validated R2 {r2:.2f})."
            ),
        )
