"""FHIR resources in plain words: a title, a date and a few labelled facts a patient can read.

Pure functions over already-decrypted JSON (the views get it from the gate). Nothing
here is clinical judgement: it says what the record says, in words instead of codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portal.metrics import observation_flags, observation_when, own_decimals, series_for_code, shown
from portal.units import quantity_unit
from records.ingest import SOURCE_TAG_SYSTEM

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
    "RiskAssessment": "Result of an automated check",
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


UNIT_WORDS = {"mm[Hg]": "mmHg", "[lb_av]": "lb", "kg/m2": "kg/m²", "mL/min/{1.73_m2}": "mL/min/1.73m²", "Cel": "°C"}


def _loinc_codes(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [str(c.get("code")) for c in concept.get("coding", []) or [] if isinstance(c, dict) and c.get("code")]


def _generic_decimals(value: float) -> int:
    """Three significant figures, at most three decimals: 83.28015 reads 83.3, 0.87654 reads 0.877."""
    size = abs(value)
    return 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3


def number_text(value: Any, codes: list[str] = [], unit: str = "") -> str:  # noqa: B006 - read only
    """A recorded number at reading precision: its own, at most the analyte's rule in its unit (else 3 figures)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    rules = [s.decimals for s in map(series_for_code, codes) if s is not None and (not unit or s.ucum == unit)]
    rule = rules[0] if rules else _generic_decimals(float(value))
    return shown(float(value), min(rule, own_decimals(value)))


def quantity_text(quantity: Any, codes: list[str] = [], *, exact: bool = False) -> str:  # noqa: B006 - read only
    """A Quantity in words, in the unit it was recorded in (rounded unless `exact`)."""
    if not isinstance(quantity, dict) or "value" not in quantity:
        return ""
    code = quantity_unit(quantity)
    unit = UNIT_WORDS.get(code) or quantity.get("unit") or code or ""
    number = str(quantity["value"]) if exact else number_text(quantity["value"], codes, code)
    return f"{number} {unit}".strip()


def value_text(holder: dict[str, Any], *, exact: bool = False) -> str:
    """An observation's (or component's) value[x] as words."""
    if "valueQuantity" in holder:
        return quantity_text(holder["valueQuantity"], _loinc_codes(holder.get("code")), exact=exact)
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
    if kind == "RiskAssessment":
        # The model's name, not the output's bare code ("code 98979-8").
        prediction = (resource.get("prediction") or [{}])[0]
        outcome = concept_text(prediction.get("outcome")) if isinstance(prediction, dict) else ""
        method = resource.get("method")
        for coding in method.get("coding", []) or [] if isinstance(method, dict) else []:
            if isinstance(coding, dict) and isinstance(coding.get("display"), str):
                return str(coding["display"])  # the model's title; method.text is its id and version
        return outcome if outcome and not outcome.startswith("code ") else "Result of an automated check"
    title = _first_concept(resource, "code", "type")
    if title.startswith("code "):
        known = series_for_code(title.removeprefix("code "))
        title = "Blood pressure" if title == f"code {BP_PANEL}" else known.label if known else title
    return title or type_words(str(kind))


# FHIR status codes as a patient reads them (clinicalStatus, verificationStatus and plain status).
STATUS_WORDS = {
    "active": "Active",
    "recurrence": "Back again",
    "relapse": "Back again",
    "inactive": "No longer active",
    "remission": "In remission",
    "resolved": "Resolved",
    "unconfirmed": "Not confirmed",
    "provisional": "Provisional",
    "differential": "One of several possibilities",
    "confirmed": "Confirmed",
    "refuted": "Ruled out",
    "entered-in-error": "Entered in error",
    "final": "Final",
    "amended": "Corrected",
    "corrected": "Corrected",
    "preliminary": "Preliminary",
    "registered": "Registered",
    "completed": "Completed",
    "stopped": "Stopped",
    "on-hold": "On hold",
    "cancelled": "Cancelled",
    "draft": "Draft",
    "finished": "Finished",
    "in-progress": "In progress",
    "not-done": "Not done",
}


def status_words(concept_or_code: Any) -> str:
    """A status in words: its display text if it has one, else the code in words ("active" reads "Active")."""
    if isinstance(concept_or_code, str):
        return STATUS_WORDS.get(concept_or_code, concept_or_code.replace("-", " ").capitalize())
    text = concept_text(concept_or_code)
    if text.startswith("code "):
        return status_words(text.removeprefix("code "))
    return text


def _status(resource: dict[str, Any]) -> str:
    for key in ("clinicalStatus", "verificationStatus"):
        text = status_words(resource.get(key))
        if text:
            return text
    status = resource.get("status")
    return status_words(status) if isinstance(status, str) else ""


SYSTOLIC, DIASTOLIC, BP_PANEL = "8480-6", "8462-4", "85354-9"


def _component(resource: dict[str, Any], code: str) -> dict[str, Any] | None:
    for component in resource.get("component", []) or []:
        if isinstance(component, dict) and code in _loinc_codes(component.get("code")):
            return component
    return None


def blood_pressure_text(resource: dict[str, Any], *, exact: bool = False) -> str:
    """Systolic/diastolic by their LOINC codes (never by order: Synthea lists diastolic first), or ""."""
    upper, lower = _component(resource, SYSTOLIC), _component(resource, DIASTOLIC)
    if upper is None or lower is None:
        return ""
    numbers = []
    for part, code in ((upper, SYSTOLIC), (lower, DIASTOLIC)):
        quantity = part.get("valueQuantity")
        if not isinstance(quantity, dict) or quantity.get("value") is None:
            return ""
        numbers.append(str(quantity["value"]) if exact else number_text(quantity["value"], [code], "mm[Hg]"))
    return "/".join(numbers) + " mmHg"


def _risk_value(resource: dict[str, Any]) -> str:
    prediction = (resource.get("prediction") or [{}])[0]
    if not isinstance(prediction, dict):
        return ""
    qualitative = concept_text(prediction.get("qualitativeRisk"))
    probability = prediction.get("probabilityDecimal")
    if isinstance(probability, int | float) and not isinstance(probability, bool):
        chance = f"{shown(100 * float(probability), 0)}% chance"
        return f"{qualitative} ({chance})" if qualitative else chance
    return qualitative or str(prediction.get("rationale", ""))


def resource_value(resource: dict[str, Any], *, exact: bool = False) -> str:
    """The one-line result: a measurement's value, a blood pressure as 120/80, else the status."""
    kind = resource.get("resourceType")
    if kind == "Observation":
        pressure = blood_pressure_text(resource, exact=exact)
        if pressure:
            return pressure
        parts = [value_text(c, exact=exact) for c in resource.get("component", []) or [] if isinstance(c, dict)]
        parts = [p for p in parts if p]
        return value_text(resource, exact=exact) or ", ".join(parts)
    if kind == "RiskAssessment":
        return _risk_value(resource)
    return _status(resource)


UNLABELLED = "No source named"


def resource_source(resource: dict[str, Any]) -> str:
    """The label of the source the resource was imported from (records.ingest tags it), or UNLABELLED."""
    meta = resource.get("meta")
    for tag in meta.get("tag", []) or [] if isinstance(meta, dict) else []:
        if isinstance(tag, dict) and tag.get("system") == SOURCE_TAG_SYSTEM and isinstance(tag.get("display"), str):
            return str(tag["display"])
    return UNLABELLED


def resource_flag(resource: dict[str, Any]) -> str:
    """H or L for a measurement of a charted kind, against its own reference range else the usual adult one."""
    return observation_flags(resource) if resource.get("resourceType") == "Observation" else ""


@dataclass
class PlainResource:
    """A resource as a person reads it: what kind, what, when, the result, and labelled details."""

    kind: str
    title: str
    when: str | None
    value: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    exact: str = ""  # the value exactly as recorded, when the shown one is rounded
    flag: str = ""


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
    if kind == "RiskAssessment":
        prediction = (resource.get("prediction") or [{}])[0]
        if isinstance(prediction, dict) and isinstance(prediction.get("rationale"), str):
            facts.append(("What it found", str(prediction["rationale"])))
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
    value = resource_value(resource)
    exact = resource_value(resource, exact=True)
    return PlainResource(
        kind=type_words(kind),
        title=resource_title(resource),
        when=resource_when(resource),
        value=value,
        facts=facts,
        exact=exact if exact != value else "",
        flag=resource_flag(resource),
    )
