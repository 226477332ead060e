"""The contract every diagnostic model keeps: what it declares, what it returns.

A model is pure computation. It declares which FHIR inputs it needs (resource
type, codes, how far back), and turns the resources the gate released into a
`ModelResult`: outputs with the contribution or rule behind each part, or an
explicit insufficient-data result that names every missing or out-of-range
input. It never fills a gap with a default.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from types import ModuleType
from typing import Any, Protocol

SUCCEEDED = "succeeded"

# Why an input stops a model: nothing recorded; only values older than its window; a value outside the
# plausible or derivation range; a unit the model cannot convert; a value it cannot read; a condition
# that puts the patient outside the intended population.
MISSING = "missing"
STALE = "stale"
OUT_OF_RANGE = "out-of-range"
WRONG_UNIT = "wrong-unit"
UNUSABLE = "unusable"
EXCLUDED = "excluded"
REASON_KINDS = (MISSING, STALE, OUT_OF_RANGE, WRONG_UNIT, UNUSABLE, EXCLUDED)
INSUFFICIENT_DATA = "insufficient-data"

DECISION_SUPPORT = (
    "Clinical decision support for a clinician, not a diagnosis: it does not replace clinical judgement, "
    "and its result must be read together with the patient's full clinical picture."
)


@dataclass(frozen=True)
class InputSpec:
    """One input a model needs, as the worker fetches it through the gate."""

    name: str  # "total_cholesterol"
    resource_type: str  # "Observation" | "Condition" | "MedicationRequest" | "Patient"
    codes: tuple[str, ...]  # "system|code" tokens the blind index knows; () for Patient
    lookback_days: int | None  # how far back a value may come from; None = any time
    required: bool = True
    # A value set (valuesets/<name>.json) that recognises this input instead of exact codes: the worker
    # then reads every resource of the type (ICD-10-CM ranges and drug names cannot be searched by token)
    # and passes the model only those the value set holds.
    value_set: str | None = None
    # The unit the model computes in, the range of values it accepts in that unit, and why that range
    # (plausibility, or the range the equation was derived on): the reader refuses a value outside it.
    unit: str = ""
    limits: tuple[float, float] | None = None
    limits_basis: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """What a model is, what it is for, and exactly what it reads."""

    id: str
    version: str  # semantic version of the code
    version_hash: str  # sha256 over the model's source and parameters (and artifact)
    title: str
    intended_use: str  # says it is decision support, not a diagnosis
    purpose: str  # the PurposeOfUse it serves: "TREAT"
    inputs: tuple[InputSpec, ...]
    output_code: str  # "system|code" of the RiskAssessment prediction
    horizon_years: int | None = None  # what the prediction is over (prediction.whenRange); None = now
    # An output also released as an Observation, to be searched and charted like a lab:
    # (output key, "system|code", UCUM unit, display).
    observation: tuple[str, str, str, str] | None = None
    population: str = ""  # who the model is for, in one sentence; it refuses anyone else

    def input(self, name: str) -> InputSpec:
        """The declared input called `name` (KeyError when the model declares none)."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)


@dataclass(frozen=True)
class Contribution:
    """What one part contributed to the result, and the rule that made it so."""

    name: str
    value: object
    effect: float | None
    rule: str
    # For a reason a model could not run: its kind and the limits it was held to (never the value).
    kind: str = ""  # one of REASON_KINDS
    low: float | None = None
    high: float | None = None
    unit: str = ""
    window_days: int | None = None
    window_minutes: int | None = None

    def reason(self) -> dict[str, Any]:
        """The structured reason, without the value or its date: safe to keep on the job after erasure."""
        found: dict[str, Any] = {"input": self.name, "kind": self.kind or MISSING}
        if self.window_days is not None:
            found["window_days"] = self.window_days
        if self.window_minutes is not None:
            found["window_minutes"] = self.window_minutes
        if self.low is not None or self.high is not None:
            found["range"] = [self.low, self.high]
        if self.unit:
            found["unit"] = self.unit
        return found


@dataclass(frozen=True)
class ModelResult:
    status: str  # "succeeded" | "insufficient-data"
    outputs: dict[str, object]
    contributions: tuple[Contribution, ...]
    missing: tuple[str, ...]  # names of missing, out-of-range or excluding inputs when insufficient
    summary: str  # one plain-language sentence, no PHI beyond the numbers
    sources: tuple[str, ...] = ()  # "Observation/<id>" of each resource the result was computed from

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def reasons(self) -> list[dict[str, Any]]:
        """Each reason the model did not run, structured and value-free (empty when it succeeded)."""
        return [c.reason() for c in self.contributions] if self.status == INSUFFICIENT_DATA else []

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for storing the result and hashing it into provenance."""
        return {
            "status": self.status,
            "outputs": dict(self.outputs),
            "contributions": [
                {"name": c.name, "value": c.value, "effect": c.effect, "rule": c.rule} for c in self.contributions
            ],
            "missing": list(self.missing),
            "reasons": self.reasons,
            "summary": self.summary,
        }


# How an input is named to a person; others read as their name with spaces.
INPUT_LABELS = {
    "hdl": "HDL cholesterol",
    "ldl": "LDL cholesterol",
    "systolic_bp": "systolic blood pressure",
    "spo2": "oxygen saturation",
    "established_ascvd": "history of atherosclerotic cardiovascular disease",
    "supplemental_oxygen": "air or supplemental oxygen",
    "consciousness": "consciousness (ACVPU)",
    "egfr": "eGFR",
    "bmi": "body mass index",
    "uacr": "urine albumin-to-creatinine ratio",
    "kidney_transplant": "kidney transplant",
    "kidney_failure": "end-stage kidney disease",
    "kidney_replacement_condition": "dialysis, kidney transplant or end-stage kidney disease (Condition)",
    "kidney_replacement_procedure": "dialysis or kidney transplant (Procedure)",
}


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def reason_words(reason: Mapping[str, Any]) -> str:
    """A structured reason in plain words, with its limits and never a patient's value."""
    name = str(reason.get("input", ""))
    label = INPUT_LABELS.get(name, name.replace("_", " "))
    kind = reason.get("kind", MISSING)
    days, minutes, unit = reason.get("window_days"), reason.get("window_minutes"), reason.get("unit", "")
    if kind == STALE and minutes is not None:
        return f"{label}: not measured within {minutes} minutes of the newest vital sign"
    if kind == STALE:
        return f"{label}: only values older than the {days} days before the as-of date"
    if kind == OUT_OF_RANGE:
        low, high = (reason.get("range") or [None, None])[:2]
        return f"{label}: outside the range the model accepts ({_number(low)}-{_number(high)} {unit})".replace(
            " )", ")"
        )
    if kind == WRONG_UNIT:
        return f"{label}: recorded in a unit the model cannot use (it needs {unit})"
    if kind == UNUSABLE:
        return f"{label}: recorded, but the value cannot be read"
    if kind == EXCLUDED:
        if name == "patient":
            return "the patient died on or before the as-of date"
        return f"{label}: recorded, which puts the patient outside the model's intended population"
    if days is None:
        return f"{label}: not recorded"
    return f"{label}: not recorded in the {'day' if days == 1 else f'{days} days'} up to the as-of date"


class Model(Protocol):
    spec: ModelSpec

    def run(self, inputs: Mapping[str, Sequence[dict[str, Any]]], *, as_of: date) -> ModelResult: ...


def insufficient(title: str, problems: Sequence[Contribution]) -> ModelResult:
    """The explicit "cannot compute" result: every problem named, with the reason as its rule."""
    names = tuple(dict.fromkeys(problem.name for problem in problems))
    readable = ", ".join(name.replace("_", " ") for name in names)
    return ModelResult(
        status=INSUFFICIENT_DATA,
        outputs={},
        contributions=tuple(problems),
        missing=names,
        summary=f"{title} was not computed: {readable} (see the reasons).",
    )


def version_hash(*, model_id: str, version: str, parameters: Any, modules: Sequence[ModuleType]) -> str:
    """sha256 over the model's identity, its parameters and the source of the modules that compute it.

    Any change to a coefficient, a code list or a line of the computing code gives
    a new hash, so a stored result always names exactly the code that produced it.
    """
    digest = hashlib.sha256()
    header = {"id": model_id, "version": version, "parameters": parameters}
    digest.update(json.dumps(header, sort_keys=True, separators=(",", ":"), default=str).encode())
    for part in (found for module in modules for found in _with_submodules(module)):
        digest.update(b"\0" + part.__name__.encode() + b"\0")
        digest.update(inspect.getsource(part).encode())
    return digest.hexdigest()


def _with_submodules(module: ModuleType) -> list[ModuleType]:
    """A module, and when it is a package every module in it, by name: a package's code is all of its modules."""
    if not hasattr(module, "__path__"):
        return [module]
    found = [module]
    for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda info: info.name):
        found += _with_submodules(importlib.import_module(f"{module.__name__}.{info.name}"))
    return found
