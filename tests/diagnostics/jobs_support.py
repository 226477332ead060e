"""Shared fixtures of the diagnostic-job tests: Alice's record, the in-process chain, grants, and a seam model.

`mean_creatinine` is a small model kept to the inference contract (diagnostics.inference.base), registered
at the model registry seam so the job tests do not depend on the clinical models' numbers. Tests that are
about the real models run them through jobs too (test_job_run.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest

from diagnostics import inference
from diagnostics.inference.base import Contribution, InputSpec, ModelResult, ModelSpec
from tests.consent.conftest import alice_record, an_observation, deployed, issue_grant  # noqa: F401
from tests.ledger.conftest import chain  # noqa: F401

LOINC = "http://loinc.org"
CREATININE_CODES = (f"{LOINC}|2160-0", f"{LOINC}|38483-4")
RUN_MODEL_TYPES = ["Observation", "Patient"]

SPEC = ModelSpec(
    id="test-mean-creatinine",
    version="1.0.0",
    version_hash="sha256:" + "ab" * 32,
    title="Mean serum creatinine (test model)",
    intended_use="Summarises serum creatinine for tests. Decision support, not a diagnosis.",
    purpose="TREAT",
    inputs=(
        InputSpec(name="patient", resource_type="Patient", codes=(), lookback_days=None),
        InputSpec(name="creatinine", resource_type="Observation", codes=CREATININE_CODES, lookback_days=3650),
    ),
    output_code=f"{LOINC}|2160-0",
)


@dataclass
class MeanCreatinine:
    spec: ModelSpec = SPEC
    # Called with the inputs before computing: lets a test act "while the model runs".
    during_run: Callable[[], None] | None = None
    raise_error: Exception | None = None
    seen: list[Mapping[str, Sequence[dict[str, Any]]]] = field(default_factory=list)

    def run(self, inputs: Mapping[str, Sequence[dict[str, Any]]], *, as_of: date) -> ModelResult:
        self.seen.append(inputs)
        if self.during_run is not None:
            self.during_run()
        if self.raise_error is not None:
            raise self.raise_error
        values = [r["valueQuantity"]["value"] for r in inputs["creatinine"] if "valueQuantity" in r]
        if not values or not inputs["patient"]:
            missing = tuple(
                n for n, ok in (("patient", bool(inputs["patient"])), ("creatinine", bool(values))) if not ok
            )
            return ModelResult("insufficient-data", {}, (), missing, "Not computed: creatinine missing.")
        mean = round(sum(values) / len(values), 3)
        return ModelResult(
            status="succeeded",
            outputs={
                "creatinine_mean_mg_dl": mean,
                "category": "high" if mean > 1.2 else "normal",
                "count": len(values),
            },
            contributions=(Contribution("creatinine", mean, None, "arithmetic mean of every value in the lookback"),),
            missing=(),
            summary=f"Mean creatinine {mean} mg/dL over {len(values)} results.",
        )


@pytest.fixture
def seam_model(monkeypatch) -> MeanCreatinine:  # type: ignore[no-untyped-def]
    """The test model, findable through diagnostics.inference.get_model next to the real ones."""
    model = MeanCreatinine()
    real_get = getattr(inference, "get_model", None)
    real_list = getattr(inference, "list_models", None)

    def get_model(model_id: str) -> Any:
        if model_id == SPEC.id:
            return model
        if real_get is None:
            raise KeyError(model_id)
        return real_get(model_id)

    def list_models() -> list[ModelSpec]:
        return [SPEC, *(real_list() if real_list else [])]

    monkeypatch.setattr(inference, "get_model", get_model, raising=False)
    monkeypatch.setattr(inference, "list_models", list_models, raising=False)
    return model


@pytest.fixture
def run_model_grant(issue_grant):  # type: ignore[no-untyped-def]  # noqa: F811
    """Alice grants Carol run-model on Patient and Observation for treatment, recorded on the in-process chain."""

    def issue(**overrides: object):  # type: ignore[no-untyped-def]
        terms: dict[str, object] = {"resource_types": RUN_MODEL_TYPES, "actions": ["run-model"]}
        terms.update(overrides)
        return issue_grant(**terms)

    return issue
