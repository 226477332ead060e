"""FHIR resources in plain words: a title, a date and a few labelled facts a patient can read.

Pure functions over already-decrypted JSON (the views get it from the gate). Nothing
here is clinical judgement: it says what the record says, in words instead of codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portal.metrics import observation_when

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass(frozen=True)
class TimelineView:
    """One tab of the timeline: a resource type, optionally narrowed to a category."""

    slug: str
    title: str
    resource_type: str
    category: str | None = None  # "system|code"


TIMELINE_VIEWS: tuple[TimelineView, ...] = (
    TimelineView("conditions", "Conditions", "Condition"),
    TimelineView("vital-signs", "Vital signs", "Observation", f"{OBSERVATION_CATEGORY}|vital-signs"),
    TimelineView("laboratory", "Lab results", "Observation", f"{OBSERVATION_CATEGORY}|laboratory"),
    TimelineView("medications", "Medications", "MedicationRequest"),
    TimelineView("encounters", "Visits", "Encounter"),
    TimelineView("immunizations", "Immunizations", "Immunization"),
    TimelineView("procedures", "Procedures", "Procedure"),
    TimelineView("allergies", "Allergies", "AllergyIntolerance"),
    TimelineView("reports", "Reports", "DiagnosticReport"),
    TimelineView("care-plans", "Care plans", "CarePlan"),
)
TIMELINE_BY_SLUG = {v.slug: v for v in TIMELINE_VIEWS}

TYPE_WORDS = {
    "AllergyIntolerance": "Allergy or intolerance",
    "CarePlan": "Care plan",
    "CareTeam": "Care team",
    "Claim": "Insurance claim",
    "Condition": "Condition (diagnosis)",
    "DiagnosticReport": "Report",
    "DocumentReference": "Document",
    "Encounter": "Visit",
    "ExplanationOfBenefit": "Insurance statement",
    "ImagingStudy": "Imaging study",
    "Immunization": "Immunization",
    "MedicationAdministration": "Medication given",
    "MedicationRequest": "Prescription",
    "Observation": "Measurement or test result",
    "Patient": "About you",
    "Procedure": "Procedure",
    "Provenance": "Where this record came from",
}


def type_words(resource_type: str) -> str:
    return TYPE_WORDS.get(resource_type, resource_type)


def concept_text(concept: Any) -> str:
    """What a CodeableConcept says, in words: its text, else the first coding's display, else its code."""
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str):
        return str(concept["text"])
    for coding in concept.get("coding", []) or []:
        if isinstance(coding, dict) and isinstance(coding.get("display"), str):
            return str(coding["display"])
    for coding in concept.get("coding", []) or []:
        if isinstance(coding, dict) and coding.get("code"):
            return f"code {coding['code']}"
    return ""


def _first_concept(resource: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = resource.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        text = concept_text(value)
        if text:
            return text
    return ""


def quantity_text(quantity: Any) -> str:
    if not isinstance(quantity, dict) or "value" not in quantity:
        return ""
    unit = quantity.get("unit") or quantity.get("code") or ""
    return f"{quantity['value']} {unit}".strip()


def value_text(holder: dict[str, Any]) -> str:
    """An observation's (or component's) value[x] as words."""
    if "valueQuantity" in holder:
        return quantity_text(holder["valueQuantity"])
    if "valueCodeableConcept" in holder:
        return concept_text(holder["valueCodeableConcept"])
    for key in ("valueString", "valueBoolean", "valueInteger", "valueDateTime"):
        if key in holder:
            value = holder[key]
            return ("yes" if value else "no") if key == "valueBoolean" else str(value)
    return ""


def _period_start(value: Any) -> str | None:
    return str(value["start"]) if isinstance(value, dict) and isinstance(value.get("start"), str) else None


def resource_when(resource: dict[str, Any]) -> str | None:
    """The date a person would put on this resource (ISO string), or None."""
    if resource.get("resourceType") == "Observation":
        return observation_when(resource)
    for key in ("onsetDateTime", "performedDateTime", "occurrenceDateTime", "authoredOn", "recordedDate", "date"):
        if isinstance(resource.get(key), str):
            return str(resource[key])
    for key in ("period", "performedPeriod", "effectivePeriod", "onsetPeriod"):
        start = _period_start(resource.get(key))
        if start:
            return start
    for key in ("effectiveDateTime", "issued", "birthDate"):
        if isinstance(resource.get(key), str):
            return str(resource[key])
    return None


def resource_title(resource: dict[str, Any]) -> str:
    """A short name for the resource: what was measured, diagnosed, prescribed or done."""
    kind = resource.get("resourceType", "")
    if kind == "Patient":
        return "Your details"
    if kind == "MedicationRequest":
        text = _first_concept(resource, "medicationCodeableConcept")
        return text or "Prescription"
    if kind == "Immunization":
        return _first_concept(resource, "vaccineCode") or "Immunization"
    if kind == "Encounter":
        return _first_concept(resource, "type", "reasonCode") or "Visit"
    if kind == "CarePlan":
        return _first_concept(resource, "category") or "Care plan"
    return _first_concept(resource, "code", "type") or type_words(str(kind))


def _status(resource: dict[str, Any]) -> str:
    for key in ("clinicalStatus", "verificationStatus"):
        text = concept_text(resource.get(key))
        if text:
            return text
    status = resource.get("status")
    return str(status) if isinstance(status, str) else ""


def resource_value(resource: dict[str, Any]) -> str:
    """The one-line result: a measurement's value, a blood pressure as 120/80, else the status."""
    if resource.get("resourceType") == "Observation":
        parts = [value_text(c) for c in resource.get("component", []) or [] if isinstance(c, dict)]
        parts = [p for p in parts if p]
        if parts and all(p.endswith("mm[Hg]") for p in parts):
            return "/".join(p.removesuffix(" mm[Hg]") for p in parts) + " mmHg"
        return value_text(resource) or ", ".join(parts)
    return _status(resource)


@dataclass
class PlainResource:
    """A resource as a person reads it: what kind, what, when, the result, and labelled details."""

    kind: str
    title: str
    when: str | None
    value: str
    facts: list[tuple[str, str]] = field(default_factory=list)


def _patient_facts(resource: dict[str, Any]) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = []
    for name in resource.get("name", []) or []:
        if isinstance(name, dict):
            given = " ".join(str(g) for g in name.get("given", []) or [])
            facts.append(("Name", f"{given} {name.get('family', '')}".strip()))
            break
    for key, label in (("gender", "Sex"), ("birthDate", "Born")):
        if isinstance(resource.get(key), str):
            facts.append((label, str(resource[key])))
    return facts


def plain_resource(resource: dict[str, Any]) -> PlainResource:
    """Everything the detail page says in words about one resource."""
    kind = str(resource.get("resourceType", ""))
    facts: list[tuple[str, str]] = []
    if kind == "Patient":
        facts = _patient_facts(resource)
    for component in resource.get("component", []) or []:
        if isinstance(component, dict):
            facts.append((concept_text(component.get("code")) or "Part", value_text(component)))
    for label, key in (("Category", "category"), ("Body site", "bodySite"), ("Reason", "reasonCode")):
        text = _first_concept(resource, key)
        if text:
            facts.append((label, text))
    status = _status(resource)
    if status:
        facts.append(("Status", status))
    for label, key in (("Ended", "abatementDateTime"), ("Issued", "issued")):
        if isinstance(resource.get(key), str):
            facts.append((label, str(resource[key])))
    period = resource.get("period")
    if isinstance(period, dict) and isinstance(period.get("end"), str):
        facts.append(("Until", str(period["end"])))
    dosage = resource.get("dosageInstruction")
    if isinstance(dosage, list) and dosage and isinstance(dosage[0], dict) and isinstance(dosage[0].get("text"), str):
        facts.append(("How to take it", str(dosage[0]["text"])))
    for note in resource.get("note", []) or []:
        if isinstance(note, dict) and isinstance(note.get("text"), str):
            facts.append(("Note", str(note["text"])))
    return PlainResource(
        kind=type_words(kind),
        title=resource_title(resource),
        when=resource_when(resource),
        value=resource_value(resource),
        facts=facts,
    )
