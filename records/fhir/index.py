"""What a resource is about, for the blind search index, and whose record it joins.

Token strings follow FHIR token search: "system|code", with an empty system
("|code") when the coding has none. Dates are calendar dates as written: a
dateTime keeps its own local date (no conversion to UTC), a partial date
("1987", "1987-06") counts as the first day it covers.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from records.fhir.document import Document, Entry

ALLERGY_CATEGORY_SYSTEM = "http://hl7.org/fhir/allergy-intolerance-category"

# The resource's main code: what a clinician searches it by (FHIR's `code` search parameter and kin).
# Paths are element names from the root; repeating elements on the way are followed.
MAIN_CODES: dict[str, tuple[str, ...]] = {
    "AuditEvent": ("type", "subtype"),
    "CarePlan": ("activity.detail.code",),
    "Claim": ("type",),
    "Composition": ("type",),
    "Consent": ("scope",),
    "Coverage": ("type",),
    "Device": ("type",),
    "DeviceRequest": ("codeCodeableConcept",),
    "DocumentReference": ("type",),
    "Encounter": ("type",),
    "EpisodeOfCare": ("type",),
    "ExplanationOfBenefit": ("type",),
    "FamilyMemberHistory": ("condition.code",),
    "Goal": ("description",),
    "ImagingStudy": ("procedureCode", "modality", "series.modality"),
    "Immunization": ("vaccineCode",),
    "Location": ("type",),
    "MedicationAdministration": ("medicationCodeableConcept",),
    "MedicationDispense": ("medicationCodeableConcept",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "MedicationStatement": ("medicationCodeableConcept",),
    # Panels (blood pressure: systolic 8480-6, diastolic 8462-4) keep their measurements in components.
    "Observation": ("code", "component.code"),
    "Organization": ("type",),
    "Provenance": ("activity",),
    "Specimen": ("type",),
}
DEFAULT_MAIN_CODES = ("code",)

# Encounter has no category; its class (ambulatory, inpatient, emergency) plays that part.
CATEGORIES: dict[str, tuple[str, ...]] = {"Encounter": ("class",)}
DEFAULT_CATEGORIES = ("category",)

# Clinically meaningful date first; every one present is indexed.
DATE_ELEMENTS = (
    "effectiveDateTime",
    "effectiveInstant",
    "effectivePeriod",
    "occurrenceDateTime",
    "occurrencePeriod",
    "performedDateTime",
    "performedPeriod",
    "onsetDateTime",
    "onsetPeriod",
    "period",
    "billablePeriod",
    "started",
    "startDate",
    "authoredOn",
    "dateAsserted",
    "recordedDate",
    "issued",
    "date",
    "dateTime",
    "created",
    "recorded",
    "occurredDateTime",
    "occurredPeriod",
    "birthDate",
)

PATIENT_ELEMENTS = ("subject", "patient", "beneficiary")


@dataclass(frozen=True)
class IndexTerms:
    patient_refs: frozenset[str]  # "Patient/<id>" or a placeholder ("urn:uuid:...") the resource is about
    codes: frozenset[str]  # "system|code" of its main code (and Observation component codes)
    categories: frozenset[str]  # "system|code" of its category (Encounter: class)
    dates: list[datetime.date]  # its dates, the clinically meaningful one first, without repeats
    # "<parameter>=<value>" of the registry's term parameters (status, gender, identifier, name ...)
    terms: frozenset[str] = frozenset()


def index_terms(resource: dict[str, Any]) -> IndexTerms:
    """The search terms of one validated resource (plain JSON, as parse_document returns it)."""
    # The registry reads this module's element tables, so it is imported here, not at the top.
    from records.fhir.search_parameters import search_terms

    resource_type = resource.get("resourceType", "")
    return IndexTerms(
        patient_refs=frozenset(patient_references(resource)),
        codes=frozenset(_tokens(resource, MAIN_CODES.get(resource_type, DEFAULT_MAIN_CODES))),
        categories=frozenset(_category_tokens(resource, resource_type)),
        dates=_dates(resource),
        terms=search_terms(resource),
    )


def patient_references(resource: dict[str, Any]) -> list[str]:
    """The patients this resource is about, in element order: a Patient is about itself."""
    if resource.get("resourceType") == "Patient":
        resource_id = resource.get("id")
        return [f"Patient/{resource_id}"] if type(resource_id) is str else []
    found: list[str] = []
    for name in PATIENT_ELEMENTS:
        value = resource.get(name)
        if type(value) is dict:
            normalized = patient_reference(value.get("reference"))
            if normalized is not None and normalized not in found:
                found.append(normalized)
    return found


def patient_reference(reference: Any) -> str | None:
    """'Patient/<id>' for a reference to a Patient (relative or absolute), the placeholder itself, else None."""
    if type(reference) is not str:
        return None
    if reference.startswith(("urn:uuid:", "urn:oid:")):
        return reference  # its target's type is only known from the document
    parts = reference.split("/_history/", 1)[0].split("/")
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return f"Patient/{parts[-1]}"
    return None


def patient_compartment(document: Document) -> dict[int, str | None]:
    """Entry index -> the key (fullUrl, else "Patient/<id>") of the Patient whose record the entry joins.

    An entry follows its patient reference (subject, patient, beneficiary). A
    reference to a Patient outside the document yields "Patient/<id>" for the store
    to find. Entries with no patient reference (Organization, Practitioner,
    Medication) join the first Patient of the document: each patient keeps their
    own copy of the shared resources, so erasing one record never reaches into
    another. None: the document holds no Patient (or only one with neither
    fullUrl nor id) and the entry names none.
    """
    keys: dict[str, str] = {}  # every way an entry may name a Patient of the document -> its key
    first: str | None = None
    found_first = False
    for entry in document.entries:
        if entry.resource_type != "Patient":
            continue
        key = _patient_key(entry)
        if not found_first:
            first, found_first = key, True
        if key is None:
            continue
        for alias in (
            entry.full_url,
            patient_reference(entry.full_url),
            entry.source_id and f"Patient/{entry.source_id}",
        ):
            if alias:
                keys.setdefault(alias, key)

    compartments: dict[int, str | None] = {}
    for entry in document.entries:
        if entry.resource_type == "Patient":
            compartments[entry.index] = _patient_key(entry)
        else:
            compartments[entry.index] = _compartment_of(entry.resource, keys, first)
    return compartments


def _patient_key(entry: Entry) -> str | None:
    return entry.full_url or (f"Patient/{entry.source_id}" if entry.source_id else None)


def _compartment_of(resource: dict[str, Any], keys: dict[str, str], first: str | None) -> str | None:
    for name in PATIENT_ELEMENTS:
        value = resource.get(name)
        reference = value.get("reference") if type(value) is dict else None
        if type(reference) is not str:
            continue
        if reference in keys:
            return keys[reference]
        normalized = patient_reference(reference)
        if normalized in keys:
            return keys[normalized]
        if normalized is not None and normalized.startswith("Patient/"):
            return normalized  # a patient held outside this document
        # Otherwise a placeholder naming a non-Patient entry (a Group, a Device): not a patient reference.
    return first


def _values(node: Any, path: str) -> list[Any]:
    found = [node]
    for name in path.split("."):
        step: list[Any] = []
        for item in found:
            value = item.get(name) if type(item) is dict else None
            if type(value) is list:
                step.extend(value)
            elif value is not None:
                step.append(value)
        found = step
    return found


def _codings(value: Any) -> list[Any]:
    """The codings of a CodeableConcept, or a Coding itself."""
    if type(value) is not dict:
        return []
    codings = value.get("coding")
    if type(codings) is list:
        return codings
    return [value] if "code" in value else []


def _tokens(resource: dict[str, Any], paths: tuple[str, ...]) -> list[str]:
    tokens: list[str] = []
    for path in paths:
        for value in _values(resource, path):
            for coding in _codings(value):
                code = coding.get("code") if type(coding) is dict else None
                if type(code) is str:
                    system = coding.get("system")
                    tokens.append(f"{system if type(system) is str else ''}|{code}")
    return tokens


def _category_tokens(resource: dict[str, Any], resource_type: str) -> list[str]:
    if resource_type == "AllergyIntolerance":
        # AllergyIntolerance.category is a list of plain codes from one fixed code system.
        return [f"{ALLERGY_CATEGORY_SYSTEM}|{code}" for code in _values(resource, "category") if type(code) is str]
    return _tokens(resource, CATEGORIES.get(resource_type, DEFAULT_CATEGORIES))


def _dates(resource: dict[str, Any]) -> list[datetime.date]:
    dates: list[datetime.date] = []
    for name in DATE_ELEMENTS:
        value = resource.get(name)
        if value is None:
            continue
        if type(value) is dict:  # a Period: where it starts, else where it ends
            value = value.get("start") or value.get("end")
        day = parse_date(value)
        if day is not None and day not in dates:
            dates.append(day)
    return dates


def parse_date(value: Any) -> datetime.date | None:
    """The calendar date a FHIR date, dateTime or instant names ("2020", "2020-05", "2020-05-17T10:00:00+02:00")."""
    if type(value) is not str or len(value) < 4:
        return None
    try:
        year = int(value[0:4])
        month = int(value[5:7]) if len(value) >= 7 else 1
        day = int(value[8:10]) if len(value) >= 10 else 1
        return datetime.date(year, month, day)
    except ValueError:
        return None
