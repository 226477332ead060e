"""FHIR renderings of diagnostics: the released RiskAssessment and its Provenance, and a job as a Task.

Pure functions over plain values: no database, no decryption. Each output validates as R4B.
Provenance facts that FHIR has no element for (model version hash, input commitment, output
hash, job id) travel as extensions under HealthLedger's own StructureDefinition URLs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

from diagnostics.inference.base import reason_words
from records.fhir import canonical_json

EXTENSION_BASE = "https://healthledger.example/fhir/StructureDefinition/"
MODEL_SYSTEM = "urn:healthledger:model"
JOB_SYSTEM = "urn:healthledger:diagnostic-job"
USER_SYSTEM = "urn:healthledger:user"
GRANT_SYSTEM = "urn:healthledger:grant"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
REASON_SYSTEM = (
    "urn:healthledger:diagnostic-reason"  # missing | stale | out-of-range | wrong-unit | unusable | excluded
)
DECISION_SUPPORT_NOTE = "Decision support, not a diagnosis: a clinician interprets this result."

# Job status -> Task.status (R4B task-status).
TASK_STATUS = {
    "queued": "requested",
    "running": "in-progress",
    "succeeded": "completed",
    "insufficient-data": "completed",
    "denied": "rejected",
    "failed": "failed",
}
_BUSINESS_STATUS = {
    "queued": "Waiting for a worker",
    "running": "Reading the consented inputs and running the model",
    "succeeded": "Result released",
    "insufficient-data": "The record lacks inputs the model needs",
    "denied": "Consent is no longer in force: nothing was released",
    "failed": "The job could not be completed",
}


class SpecLike(Protocol):
    id: str
    version: str
    version_hash: str
    title: str
    intended_use: str
    output_code: str


def instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _coding(token: str, display: str = "") -> dict[str, Any]:
    system, _, code = token.partition("|")
    coding: dict[str, Any] = {"code": code}
    if system:
        coding["system"] = system
    if display:
        coding["display"] = display
    return coding


def _value(value: object) -> dict[str, Any]:
    # bool before int: True is an int in Python but a boolean in FHIR.
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": round(value, 6)}
    return {"valueString": str(value)}


def _named(url: str, name: str, value: object, extra: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "name", "valueString": name}]
    if value is not None:
        parts.append({"url": "value", **_value(value)})
    parts.extend(extra)
    return {"url": EXTENSION_BASE + url, "extension": parts}


def _probability(outputs: Mapping[str, object]) -> float | None:
    for key, value in outputs.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            if "percent" in key:
                return round(float(value) / 100.0, 6)
            if "probability" in key:
                return round(float(value), 6)
    return None


def _qualitative(outputs: Mapping[str, object]) -> str:
    for key in ("category", "risk_band", "risk", "stage", "band"):
        value = outputs.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


# A model's own category -> HL7 risk-probability, where the words mean the same.
RISK_PROBABILITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
RISK_PROBABILITY = {
    "low": "low",
    "borderline": "low",
    "low-medium": "low",
    "intermediate": "moderate",
    "medium": "moderate",
    "moderate": "moderate",
    "high": "high",
}
UCUM = "http://unitsofmeasure.org"


def _qualitative_concept(spec_id: str, qualitative: str) -> dict[str, Any]:
    codings = [{"system": f"{MODEL_SYSTEM}:{spec_id}:category", "code": qualitative, "display": qualitative}]
    if qualitative in RISK_PROBABILITY:
        codings.append({"system": RISK_PROBABILITY_SYSTEM, "code": RISK_PROBABILITY[qualitative]})
    return {"coding": codings, "text": qualitative}


def risk_assessment(
    *,
    resource_id: str,
    job_id: str,
    spec: SpecLike,
    patient_fhir_id: str,
    as_of: date,
    outputs: Mapping[str, object],
    contributions: Sequence[Any],
    summary: str,
    basis: Sequence[str],
) -> dict[str, Any]:
    """The RiskAssessment a succeeded job releases into the patient's record."""
    prediction: dict[str, Any] = {"outcome": {"coding": [_coding(spec.output_code, spec.title)]}}
    probability = _probability(outputs)
    if probability is not None and 0 <= probability <= 1:
        prediction["probabilityDecimal"] = probability
    qualitative = _qualitative(outputs)
    if qualitative:
        prediction["qualitativeRisk"] = _qualitative_concept(spec.id, qualitative)
    horizon = getattr(spec, "horizon_years", None)
    if horizon:
        prediction["whenRange"] = {
            "low": {"value": 0, "unit": "years", "system": UCUM, "code": "a"},
            "high": {"value": horizon, "unit": "years", "system": UCUM, "code": "a"},
        }
    if summary:
        prediction["rationale"] = summary
    extensions = [_named("model-output", name, value) for name, value in outputs.items()]
    for part in contributions:
        rule = [{"url": "rule", "valueString": str(part.rule)}] if getattr(part, "rule", "") else []
        effect = [{"url": "effect", "valueDecimal": round(float(part.effect), 6)}] if part.effect is not None else []
        extensions.append(_named("model-contribution", part.name, part.value, [*effect, *rule]))
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": resource_id,
        "identifier": [{"system": JOB_SYSTEM, "value": job_id}],
        "status": "final",
        "subject": {"reference": f"Patient/{patient_fhir_id}"},
        # The clinical date the assessment is for (its as-of date), not when the worker ran.
        "occurrenceDateTime": as_of.isoformat(),
        "method": {
            "coding": [{"system": MODEL_SYSTEM, "code": spec.id, "display": spec.title}],
            "text": f"{spec.id} {spec.version}",
        },
        "code": {"coding": [_coding(spec.output_code)]},
        "prediction": [prediction],
        "note": [{"text": f"{spec.intended_use} {DECISION_SUPPORT_NOTE}"}],
    }
    population = getattr(spec, "population", "")
    if population:
        resource["note"].append({"text": f"Population: {population}"})
    if basis:
        resource["basis"] = [{"reference": ref} for ref in basis]
    if extensions:
        resource["extension"] = extensions
    return resource


def derived_observation(
    *,
    resource_id: str,
    job_id: str,
    spec: SpecLike,
    patient_fhir_id: str,
    as_of: date,
    value: float,
    derived_from: Sequence[str],
) -> dict[str, Any]:
    """A model output released as a laboratory-style Observation (eGFR as LOINC 98979-8, in UCUM units)."""
    key, token, unit, display = spec.observation  # type: ignore[attr-defined]
    del key
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "identifier": [{"system": JOB_SYSTEM, "value": job_id}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [_coding(token, display)], "text": display},
        "subject": {"reference": f"Patient/{patient_fhir_id}"},
        "effectiveDateTime": as_of.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        "method": {"coding": [{"system": MODEL_SYSTEM, "code": spec.id, "display": spec.title}]},
        "derivedFrom": [{"reference": ref} for ref in derived_from],
        "note": [{"text": DECISION_SUPPORT_NOTE}],
    }


def output_hash(resource: Mapping[str, Any]) -> str:
    """sha256 (hex) over the resource's canonical JSON, `meta` left out: what the store keeps, minus its bookkeeping."""
    content = {key: value for key, value in resource.items() if key != "meta"}
    return hashlib.sha256(canonical_json(content)).hexdigest()


def input_commitment(bodies: Sequence[bytes]) -> str:
    """sha256 (hex) over the inputs' stored bytes in the order read, each prefixed by its 8-byte length.

    The length prefix keeps the commitment unambiguous: no two different input lists hash alike by
    moving bytes across a boundary.
    """
    digest = hashlib.sha256()
    for body in bodies:
        digest.update(len(body).to_bytes(8, "big"))
        digest.update(body)
    return digest.hexdigest()


def provenance(
    *,
    job_id: str,
    spec: SpecLike,
    target: str,
    sources: Sequence[str],
    recorded: datetime,
    purpose: str,
    requester_ref: str,
    input_commitment_hex: str,
    output_hash_hex: str,
    as_of: date | None = None,
    grant_id: str = "",
    also_targets: Sequence[str] = (),
) -> dict[str, Any]:
    """The Provenance of a released RiskAssessment: which model made it, from what, as of when, under which grant,
    for whom, and the hashes."""
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": ref} for ref in (target, *also_targets)],
        "recorded": instant(recorded),
        "reason": [{"coding": [{"system": PURPOSE_SYSTEM, "code": purpose}]}],
        "activity": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                        }
                    ]
                },
                "who": {
                    "identifier": {"system": MODEL_SYSTEM, "value": f"{spec.id}@{spec.version}"},
                    "display": f"{spec.title} {spec.version}",
                },
            },
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "enterer",
                        }
                    ]
                },
                "who": {"identifier": {"system": USER_SYSTEM, "value": requester_ref}},
            },
        ],
        "extension": [
            {"url": EXTENSION_BASE + "diagnostic-job", "valueString": job_id},
            {"url": EXTENSION_BASE + "model-id", "valueString": spec.id},
            {"url": EXTENSION_BASE + "model-version", "valueString": spec.version},
            {"url": EXTENSION_BASE + "model-version-hash", "valueString": spec.version_hash},
            {"url": EXTENSION_BASE + "input-commitment", "valueString": "sha256:" + input_commitment_hex},
            {"url": EXTENSION_BASE + "output-hash", "valueString": "sha256:" + output_hash_hex},
        ],
    }
    if as_of is not None:
        resource["extension"].append({"url": EXTENSION_BASE + "as-of", "valueDate": as_of.isoformat()})
    if grant_id:
        # The grant that authorised the run (its id is the EIP-712 struct hash recorded on chain).
        resource["policy"] = [f"{GRANT_SYSTEM}:{grant_id}"]
        resource["extension"].append({"url": EXTENSION_BASE + "grant", "valueString": grant_id})
    if sources:
        resource["entity"] = [{"role": "source", "what": {"reference": ref}} for ref in sources]
    return resource


def job_as_task(
    *,
    job: Any,
    patient_fhir_id: str,
    model_title: str,
    result_refs: Sequence[str] = (),
    reason_detail: str = "",
) -> dict[str, Any]:
    """A job as an R4B Task: its state, what it is about, and (once released) its outputs.

    An insufficient-data job's reasons are a coded statusReason (one coding per reason, its kind as the
    code, the plain words as display); `reason_detail` (the model's own words, opened for this viewer)
    is added as a note.
    """
    status = str(job.status)
    business = _BUSINESS_STATUS[status]
    if job.status_reason and status in ("insufficient-data", "denied", "failed"):
        business = f"{business} ({job.status_reason})"
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(job.id),
        "identifier": [{"system": JOB_SYSTEM, "value": str(job.id)}],
        "status": TASK_STATUS[status],
        "businessStatus": {"text": business},
        "intent": "order",
        "code": {"coding": [{"system": "urn:healthledger:operation", "code": "diagnose"}], "text": "$diagnose"},
        "focus": {"identifier": {"system": MODEL_SYSTEM, "value": job.model_id}, "display": model_title},
        "requester": {"identifier": {"system": USER_SYSTEM, "value": f"user:{job.requester_id}"}},
        "owner": {"display": "HealthLedger diagnostic worker"},
        "authoredOn": instant(job.created_at),
        "lastModified": instant(job.updated_at),
        "reasonCode": {"coding": [{"system": PURPOSE_SYSTEM, "code": job.purpose}]},
        "input": [
            {"type": {"text": "model"}, "valueString": f"{job.model_id}@{job.model_version}"},
            {"type": {"text": "as-of"}, "valueDate": job.as_of.isoformat()},
        ],
        "extension": [{"url": EXTENSION_BASE + "progress", "valueInteger": int(job.progress)}],
    }
    if patient_fhir_id:
        task["for"] = {"reference": f"Patient/{patient_fhir_id}"}
    if job.started_at or job.finished_at:
        period: dict[str, str] = {}
        if job.started_at:
            period["start"] = instant(job.started_at)
        if job.finished_at:
            period["end"] = instant(job.finished_at)
        task["executionPeriod"] = period
    if job.status_reason and status in ("denied", "failed"):
        task["statusReason"] = {"text": job.status_reason}
    reasons = list(getattr(job, "reasons", None) or ())
    if reasons and status == "insufficient-data":
        words = [reason_words(reason) for reason in reasons]
        task["statusReason"] = {
            "coding": [
                {"system": REASON_SYSTEM, "code": str(reason.get("kind")), "display": text}
                for reason, text in zip(reasons, words, strict=True)
            ],
            "text": "; ".join(words),
        }
    if reason_detail and status == "insufficient-data":
        task["note"] = [{"text": reason_detail}]
    outputs = [{"type": {"text": ref.split("/", 1)[0]}, "valueReference": {"reference": ref}} for ref in result_refs]
    if outputs:
        task["output"] = outputs
    return task
