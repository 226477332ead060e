"""AI model cards and the patient's own diagnostic jobs, in plain words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from consent import gate
from diagnostics.inference import list_models
from diagnostics.selectors import job_reason_detail
from portal.plain import type_words
from records.models import Patient

RESULTS_SHOWN = 10


@dataclass(frozen=True)
class ModelCard:
    id: str
    title: str
    version: str
    intended_use: str
    reads: list[str]


def model_card(spec: Any) -> ModelCard:
    """What a model is for and what it reads, in words (from its declared spec)."""
    reads = [
        f"{type_words(i.resource_type)}: {i.name.replace('_', ' ')}"
        + (f" (from the last {i.lookback_days} days)" if i.lookback_days else "")
        + ("" if i.required else ", if present")
        for i in spec.inputs
    ]
    return ModelCard(id=spec.id, title=spec.title, version=spec.version, intended_use=spec.intended_use, reads=reads)


@dataclass
class AiResult:
    summary: str = ""
    qualitative: str = ""
    probability: float | None = None
    outputs: list[tuple[str, str]] = field(default_factory=list)
    contributions: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, value, effect, rule
    notes: list[str] = field(default_factory=list)
    reference: str = ""


@dataclass
class AiJob:
    job: Any
    title: str
    active: bool
    result: AiResult | None
    reason_detail: str = ""  # the model's own words for why it did not run, opened for the patient


def _ext_value(parts: list[dict[str, Any]], url: str) -> str:
    for part in parts:
        if part.get("url") == url:
            for key, value in part.items():
                if key.startswith("value"):
                    return str(value)
    return ""


def risk_assessment_in_words(resource: dict[str, Any]) -> AiResult:
    """A released RiskAssessment as the page shows it: the sentence, each output and each contribution with its rule."""
    prediction = (resource.get("prediction") or [{}])[0]
    result = AiResult(
        summary=str(prediction.get("rationale", "")),
        qualitative=str((prediction.get("qualitativeRisk") or {}).get("text", "")),
        probability=prediction.get("probabilityDecimal"),
        notes=[str(n.get("text", "")) for n in resource.get("note", []) if isinstance(n, dict)],
        reference=f"RiskAssessment/{resource.get('id', '')}",
    )
    for ext in resource.get("extension", []) or []:
        url = str(ext.get("url", ""))
        parts = ext.get("extension", []) or []
        name = _ext_value(parts, "name").replace("_", " ")
        if url.endswith("/model-output"):
            result.outputs.append((name, _ext_value(parts, "value")))
        elif url.endswith("/model-contribution"):
            result.contributions.append(
                (name, _ext_value(parts, "value"), _ext_value(parts, "effect"), _ext_value(parts, "rule"))
            )
    return result


def ai_jobs(*, caller: gate.Caller, patient: Patient, jobs: list[Any]) -> list[AiJob]:
    """The patient's jobs, newest first, with the results of the newest ones read through the gate."""
    titles = {spec.id: spec.title for spec in list_models()}
    shown: list[AiJob] = []
    read = 0
    for job in jobs:
        result = None
        stored = getattr(job, "result", None) if job.status == "succeeded" else None
        if stored is not None and read < RESULTS_SHOWN:
            kind, ident, _, version = ([*stored.risk_assessment_ref.split("/"), "", "", "", ""])[:4]
            body = gate.resource_read(
                caller=caller,
                patient=patient,
                resource_type=kind,
                resource_id=ident,
                version=int(version) if version.isdigit() else None,
            )
            result = risk_assessment_in_words(orjson.loads(body))
            read += 1
        shown.append(
            AiJob(
                job=job,
                title=titles.get(job.model_id, job.model_id),
                active=job.status in ("queued", "running"),
                result=result,
                reason_detail=job_reason_detail(job) if job.status == "insufficient-data" else "",
            )
        )
    return shown
