"""Distributions of the diagnostic models' scores over a study's participants, computed in the worker.

For each participant the worker reads the model's declared inputs through the gate under the
participant's grant (the study's data list covers the model's resource types), runs the registered
model in process (`diagnostics.inference`: pure computation, no DiagnosticJob, nothing written into
the record) and adds the score to the chunk's sums: a histogram over the fixed bands declared here
per model, the sum and sum of squares (mean and SD), the two largest scores (for the dominance rule
only, cleared when chunks are combined), and refusals counted by one value-free reason code
("input:kind", the first reason the model names). No score leaves the chunk; no minimum or maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from diagnostics import inference
from research.catalogue import InvalidAnalysis, Participant


@dataclass(frozen=True)
class Score:
    """Which output of a model is its score, its unit, and the fixed bands the histogram counts."""

    output: str
    unit: str
    # Ascending lower bounds: band i holds lower[i] <= score < lower[i + 1]; the last band is open.
    lower: tuple[float, ...]
    labels: tuple[str, ...]
    basis: str  # where the bands come from


_DECILES = tuple(float(x) for x in range(0, 100, 10))
SCORES: dict[str, Score] = {
    "ascvd-pce-2013": Score(
        "risk_10y_percent", "%", (0.0, 5.0, 7.5, 20.0),
        ("low (under 5%)", "borderline (5-7.4%)", "intermediate (7.5-19.9%)", "high (20% or more)"),
        "the 2019 ACC/AHA risk categories the model reports",
    ),
    "prevent-base-2024": Score(
        "risk_10y_percent", "%", (0.0, 5.0, 7.5, 20.0),
        ("low (under 5%)", "borderline (5-7.4%)", "intermediate (7.5-19.9%)", "high (20% or more)"),
        "the AHA PREVENT 10-year total CVD risk categories",
    ),
    "egfr-ckd-epi-2021": Score(
        "egfr_ml_min_1_73m2", "mL/min/1.73m2", (0.0, 15.0, 30.0, 45.0, 60.0, 90.0),
        ("G5 (under 15)", "G4 (15-29)", "G3b (30-44)", "G3a (45-59)", "G2 (60-89)", "G1 (90 or more)"),
        "the KDIGO 2012 GFR categories the model reports",
    ),
    "kfre-4-variable": Score(
        "risk_5y_percent", "%", _DECILES,
        tuple(f"{int(lo)}-{int(lo) + 9}%" if lo < 90 else "90% or more" for lo in _DECILES),
        "deciles of the 0-100% probability range",
    ),
    "news2": Score(
        "score", "points", (0.0, 1.0, 5.0, 7.0),
        ("0", "1-4 (low)", "5-6 (medium)", "7 or more (high)"),
        "the RCP NEWS2 aggregate score bands",
    ),
    "diabetes-progression": Score(
        "progression_score", "score", tuple(float(x) for x in range(0, 350, 50)),
        tuple(f"{x}-{x + 49}" if x < 300 else "300 or more" for x in range(0, 350, 50)),
        "bands of 50 over the model's training range (25-346)",
    ),
}  # fmt: skip


def band_of(score: Score, value: float) -> str:
    index = max(0, sum(1 for lo in score.lower if value >= lo) - 1)
    return score.labels[index]


class ModelScoreDistribution:
    id = "model-score-distribution"
    version = "1.0.0"
    title = "Distribution of a diagnostic model's score"

    def _model(self, model_id: str) -> Any:
        return inference.get_model(model_id)

    def params(self, raw: dict[str, Any]) -> dict[str, Any]:
        model_id = raw.get("model")
        registered = {spec.id for spec in inference.list_models()}
        scored = sorted(m for m in SCORES if m in registered)
        if not isinstance(model_id, str) or model_id not in scored:
            raise InvalidAnalysis(f"model-score-distribution: model is one of {', '.join(scored)}")
        as_of = raw.get("as_of")
        if as_of is not None:
            try:
                as_of = date.fromisoformat(str(as_of)).isoformat()
            except ValueError:
                raise InvalidAnalysis("model-score-distribution: as_of is a date, YYYY-MM-DD") from None
        return {"model": model_id, "as_of": as_of}

    def bind(self, params: dict[str, Any], *, day: date) -> dict[str, Any]:
        """A run's own params: the as-of date (the run's date by default) and the model's exact version."""
        spec = self._model(params["model"]).spec
        return {**params, "as_of": params.get("as_of") or day.isoformat(),
                "model_version": spec.version, "model_hash": spec.version_hash}  # fmt: skip

    def reads(self, params: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
        return []  # its reads are the model's inputs (searches), kept whole for the model

    def searches(self, params: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
        """One gated search per resource type, with every code the model declares (() reads the type whole)."""
        codes: dict[str, set[str]] = {}
        whole: set[str] = set()
        for item in self._model(params["model"]).spec.inputs:
            if item.resource_type == "Patient":
                continue
            codes.setdefault(item.resource_type, set()).update(item.codes)
            if item.value_set is not None:
                whole.add(item.resource_type)  # a value set cannot be searched by token
        return [(kind, () if kind in whole else tuple(sorted(cs))) for kind, cs in sorted(codes.items())]

    def person(self, params: dict[str, Any]) -> bool:
        return any(i.resource_type == "Patient" for i in self._model(params["model"]).spec.inputs)

    def data(self, params: dict[str, Any]) -> list[str]:
        return sorted({i.resource_type for i in self._model(params["model"]).spec.inputs})

    def empty(self, params: dict[str, Any]) -> dict[str, Any]:
        labels = SCORES[params["model"]].labels
        return {"bands": dict.fromkeys(labels, 0), "refused": {}, "n": 0, "sum": 0.0, "sumsq": 0.0, "top": []}

    def contribute(self, acc: dict[str, Any], who: Participant, params: dict[str, Any]) -> None:
        model = self._model(params["model"])
        score = SCORES[params["model"]]
        inputs = inference.inputs_from_resources(model.spec, who.resources)
        try:
            result = model.run(inputs, as_of=date.fromisoformat(params["as_of"]))
        except (ArithmeticError, KeyError, TypeError, ValueError):
            result = None
        if result is None or not result.succeeded:
            reasons = result.reasons if result is not None else []
            code = f"{reasons[0]['input']}:{reasons[0]['kind']}" if reasons else "model:unusable"
            acc["refused"][code] = acc["refused"].get(code, 0) + 1
            return
        value = result.outputs.get(score.output)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            acc["refused"]["model:unusable"] = acc["refused"].get("model:unusable", 0) + 1
            return
        value = float(value)
        acc["bands"][band_of(score, value)] += 1
        acc["n"] += 1
        acc["sum"] += value
        acc["sumsq"] += value * value
        # The two largest scores, for the dominance rule only; never released and cleared after combining.
        acc["top"] = sorted([*acc["top"], abs(value)], reverse=True)[:2]

    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        refused = dict(a["refused"])
        for code, n in b["refused"].items():
            refused[code] = refused.get(code, 0) + n
        return {
            "bands": {k: a["bands"].get(k, 0) + b["bands"].get(k, 0) for k in {**a["bands"], **b["bands"]}},
            "refused": refused,
            "n": a["n"] + b["n"],
            "sum": a["sum"] + b["sum"],
            "sumsq": a["sumsq"] + b["sumsq"],
            "top": sorted([*a["top"], *b["top"]], reverse=True)[:2],
        }

    def words(self, params: dict[str, Any]) -> str:
        spec = self._model(params["model"]).spec
        score = SCORES[params["model"]]
        when = f"as of {params['as_of']}" if params.get("as_of") else "as of the day the analysis runs"
        return (
            f"How participants' results of the {spec.title} model ({when}) spread over its bands"
            f" ({', '.join(score.labels)}), with their average and spread, and how many it could not compute"
            " and for what kind of reason (such as a missing measurement). The model runs inside HealthLedger on"
            " the data it needs; your own result is not stored, not added to your record and never leaves."
        )
