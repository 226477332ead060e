"""The search parameters of each record type, declared once: the parser, the CapabilityStatement and the docs follow.

Each parameter says what it searches (a FHIRPath expression, for the reader and the
CapabilityStatement) and which column of the blind index (or of the row) answers it: the
index's extraction is records.fhir.index, whose element tables the expressions are built
from, so a path added there shows here. A type gets a parameter only when it has an element
that parameter reads (no `code` on Patient).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from records.fhir.index import (
    CATEGORIES,
    DATE_ELEMENTS,
    DEFAULT_CATEGORIES,
    DEFAULT_MAIN_CODES,
    MAIN_CODES,
    PATIENT_ELEMENTS,
)

HL7 = "http://hl7.org/fhir/SearchParameter"
# Where this server's own definitions live: their canonical URL is the FHIR base's SearchParameter/<id>.
LOCAL = "SearchParameter"


@dataclass(frozen=True)
class SearchParameter:
    code: str  # the name in a query
    type: str  # FHIR search parameter type: token, reference, date ...
    expression: str  # FHIRPath over the resource
    description: str
    # What answers it: "record" (the record searched), "id", "code", "category", "date", "term" (blind-index
    # tokens: a term's are records.fhir.search_parameters.search_terms), "updated" (the row's update, in the clear).
    index: str
    # HL7's canonical when this is the standard definition, else "" (this server's: SearchParameter/<id>).
    standard_url: str = ""
    resource_type: str = "Resource"

    @property
    def id(self) -> str:
        return f"{self.resource_type}-{self.code.lstrip('_')}"

    def url(self, fhir_base: str) -> str:
        return self.standard_url or f"{fhir_base}/{LOCAL}/{self.id}"


# The top-level elements of each type that a parameter below reads, from the fhir.resources R4B models
# (a literal: importing every model costs seconds; tests/records/test_search_parameters.py checks it).
ELEMENTS: dict[str, frozenset[str]] = {
    "Account": frozenset({"description", "identifier", "name", "status", "subject", "type"}),
    "ActivityDefinition": frozenset({"code", "date", "description", "effectivePeriod", "identifier", "name", "status"}),
    "AdministrableProductDefinition": frozenset({"identifier", "status"}),
    "AdverseEvent": frozenset({"category", "date", "encounter", "identifier", "recordedDate", "subject"}),
    "AllergyIntolerance": frozenset(
        {
            "category",
            "clinicalStatus",
            "code",
            "encounter",
            "identifier",
            "onsetDateTime",
            "onsetPeriod",
            "patient",
            "recordedDate",
            "type",
            "verificationStatus",
        }
    ),
    "Appointment": frozenset({"created", "description", "identifier", "status"}),
    "AppointmentResponse": frozenset({"identifier"}),
    "AuditEvent": frozenset({"period", "recorded", "subtype", "type"}),
    "Basic": frozenset({"code", "created", "identifier", "subject"}),
    "BiologicallyDerivedProduct": frozenset({"identifier", "status"}),
    "BodyStructure": frozenset({"description", "identifier", "patient"}),
    "Bundle": frozenset({"identifier", "type"}),
    "CapabilityStatement": frozenset({"date", "description", "name", "status"}),
    "CarePlan": frozenset(
        {"activity", "category", "created", "description", "encounter", "identifier", "period", "status", "subject"}
    ),
    "CareTeam": frozenset({"category", "encounter", "identifier", "name", "period", "status", "subject"}),
    "CatalogEntry": frozenset({"identifier", "status", "type"}),
    "ChargeItem": frozenset({"code", "identifier", "occurrenceDateTime", "occurrencePeriod", "status", "subject"}),
    "ChargeItemDefinition": frozenset({"code", "date", "description", "effectivePeriod", "identifier", "status"}),
    "Citation": frozenset({"date", "description", "effectivePeriod", "identifier", "name", "status"}),
    "Claim": frozenset({"billablePeriod", "created", "identifier", "patient", "status", "type"}),
    "ClaimResponse": frozenset({"created", "identifier", "patient", "status", "type"}),
    "ClinicalImpression": frozenset(
        {
            "code",
            "date",
            "description",
            "effectiveDateTime",
            "effectivePeriod",
            "encounter",
            "identifier",
            "status",
            "subject",
        }
    ),
    "ClinicalUseDefinition": frozenset({"category", "identifier", "status", "subject", "type"}),
    "CodeSystem": frozenset({"date", "description", "identifier", "name", "status"}),
    "Communication": frozenset({"category", "encounter", "identifier", "status", "subject"}),
    "CommunicationRequest": frozenset(
        {
            "authoredOn",
            "category",
            "encounter",
            "identifier",
            "occurrenceDateTime",
            "occurrencePeriod",
            "status",
            "subject",
        }
    ),
    "CompartmentDefinition": frozenset({"code", "date", "description", "name", "status"}),
    "Composition": frozenset({"category", "date", "encounter", "identifier", "status", "subject", "type"}),
    "ConceptMap": frozenset({"date", "description", "identifier", "name", "status"}),
    "Condition": frozenset(
        {
            "category",
            "clinicalStatus",
            "code",
            "encounter",
            "identifier",
            "onsetDateTime",
            "onsetPeriod",
            "recordedDate",
            "subject",
            "verificationStatus",
        }
    ),
    "Consent": frozenset({"category", "dateTime", "identifier", "patient", "scope", "status"}),
    "Contract": frozenset({"identifier", "issued", "name", "scope", "status", "subject", "type"}),
    "Coverage": frozenset({"beneficiary", "class", "identifier", "period", "status", "type"}),
    "CoverageEligibilityRequest": frozenset({"created", "identifier", "patient", "status"}),
    "CoverageEligibilityResponse": frozenset({"created", "identifier", "patient", "status"}),
    "DetectedIssue": frozenset({"code", "identifier", "patient", "status"}),
    "Device": frozenset({"identifier", "patient", "status", "type"}),
    "DeviceDefinition": frozenset({"identifier", "type"}),
    "DeviceMetric": frozenset({"category", "identifier", "type"}),
    "DeviceRequest": frozenset(
        {
            "authoredOn",
            "codeCodeableConcept",
            "encounter",
            "identifier",
            "occurrenceDateTime",
            "occurrencePeriod",
            "status",
            "subject",
        }
    ),
    "DeviceUseStatement": frozenset({"identifier", "status", "subject"}),
    "DiagnosticReport": frozenset(
        {
            "category",
            "code",
            "effectiveDateTime",
            "effectivePeriod",
            "encounter",
            "identifier",
            "issued",
            "status",
            "subject",
        }
    ),
    "DocumentManifest": frozenset({"created", "description", "identifier", "status", "subject", "type"}),
    "DocumentReference": frozenset({"category", "date", "description", "identifier", "status", "subject", "type"}),
    "Encounter": frozenset({"class", "identifier", "period", "status", "subject", "type"}),
    "Endpoint": frozenset({"identifier", "name", "period", "status"}),
    "EnrollmentRequest": frozenset({"created", "identifier", "status"}),
    "EnrollmentResponse": frozenset({"created", "identifier", "status"}),
    "EpisodeOfCare": frozenset({"identifier", "patient", "period", "status", "type"}),
    "EventDefinition": frozenset({"date", "description", "effectivePeriod", "identifier", "name", "status"}),
    "Evidence": frozenset({"date", "description", "identifier", "status"}),
    "EvidenceReport": frozenset({"identifier", "status", "subject", "type"}),
    "EvidenceVariable": frozenset({"category", "date", "description", "identifier", "name", "status"}),
    "ExampleScenario": frozenset({"date", "identifier", "name", "status"}),
    "ExplanationOfBenefit": frozenset({"billablePeriod", "created", "identifier", "patient", "status", "type"}),
    "FamilyMemberHistory": frozenset({"condition", "date", "identifier", "name", "patient", "status"}),
    "Flag": frozenset({"category", "code", "encounter", "identifier", "period", "status", "subject"}),
    "Goal": frozenset({"category", "description", "identifier", "startDate", "subject", "target"}),
    "GraphDefinition": frozenset({"date", "description", "name", "status"}),
    "Group": frozenset({"code", "identifier", "name", "type"}),
    "GuidanceResponse": frozenset({"encounter", "identifier", "occurrenceDateTime", "status", "subject"}),
    "HealthcareService": frozenset({"category", "identifier", "name", "type"}),
    "ImagingStudy": frozenset(
        {
            "description",
            "encounter",
            "identifier",
            "modality",
            "procedureCode",
            "series",
            "started",
            "status",
            "subject",
        }
    ),
    "Immunization": frozenset(
        {"encounter", "identifier", "occurrenceDateTime", "patient", "recorded", "status", "vaccineCode"}
    ),
    "ImmunizationEvaluation": frozenset({"date", "description", "identifier", "patient", "series", "status"}),
    "ImmunizationRecommendation": frozenset({"date", "identifier", "patient"}),
    "ImplementationGuide": frozenset({"date", "description", "name", "status"}),
    "Ingredient": frozenset({"identifier", "status"}),
    "InsurancePlan": frozenset({"identifier", "name", "period", "status", "type"}),
    "Invoice": frozenset({"date", "identifier", "status", "subject", "type"}),
    "Library": frozenset({"date", "description", "effectivePeriod", "identifier", "name", "status", "type"}),
    "List": frozenset({"code", "date", "encounter", "identifier", "status", "subject"}),
    "Location": frozenset({"description", "identifier", "name", "status", "type"}),
    "ManufacturedItemDefinition": frozenset({"identifier", "status"}),
    "Measure": frozenset({"date", "description", "effectivePeriod", "identifier", "name", "status", "type"}),
    "MeasureReport": frozenset({"date", "identifier", "period", "status", "subject", "type"}),
    "Media": frozenset({"encounter", "identifier", "issued", "modality", "status", "subject", "type"}),
    "Medication": frozenset({"code", "identifier", "status"}),
    "MedicationAdministration": frozenset(
        {
            "category",
            "effectiveDateTime",
            "effectivePeriod",
            "identifier",
            "medicationCodeableConcept",
            "status",
            "subject",
        }
    ),
    "MedicationDispense": frozenset(
        {"category", "identifier", "medicationCodeableConcept", "status", "subject", "type"}
    ),
    "MedicationKnowledge": frozenset({"code", "status"}),
    "MedicationRequest": frozenset(
        {"authoredOn", "category", "encounter", "identifier", "medicationCodeableConcept", "status", "subject"}
    ),
    "MedicationStatement": frozenset(
        {
            "category",
            "dateAsserted",
            "effectiveDateTime",
            "effectivePeriod",
            "identifier",
            "medicationCodeableConcept",
            "status",
            "subject",
        }
    ),
    "MedicinalProductDefinition": frozenset({"code", "description", "identifier", "name", "status", "type"}),
    "MessageDefinition": frozenset({"category", "date", "description", "identifier", "name", "status"}),
    "MolecularSequence": frozenset({"identifier", "patient", "type"}),
    "NamingSystem": frozenset({"date", "description", "name", "status", "type"}),
    "NutritionOrder": frozenset({"dateTime", "encounter", "identifier", "patient", "status"}),
    "NutritionProduct": frozenset({"category", "code", "status"}),
    "Observation": frozenset(
        {
            "category",
            "code",
            "component",
            "effectiveDateTime",
            "effectiveInstant",
            "effectivePeriod",
            "encounter",
            "identifier",
            "issued",
            "status",
            "subject",
        }
    ),
    "ObservationDefinition": frozenset({"category", "code", "identifier"}),
    "OperationDefinition": frozenset({"code", "date", "description", "name", "status", "type"}),
    "Organization": frozenset({"identifier", "name", "type"}),
    "OrganizationAffiliation": frozenset({"code", "identifier", "period"}),
    "PackagedProductDefinition": frozenset({"description", "identifier", "name", "status", "type"}),
    "Patient": frozenset({"birthDate", "gender", "identifier", "name"}),
    "PaymentNotice": frozenset({"created", "identifier", "status"}),
    "PaymentReconciliation": frozenset({"created", "identifier", "period", "status"}),
    "Person": frozenset({"birthDate", "gender", "identifier", "name"}),
    "PlanDefinition": frozenset({"date", "description", "effectivePeriod", "identifier", "name", "status", "type"}),
    "Practitioner": frozenset({"birthDate", "gender", "identifier", "name"}),
    "PractitionerRole": frozenset({"code", "identifier", "period"}),
    "Procedure": frozenset(
        {"category", "code", "encounter", "identifier", "performedDateTime", "performedPeriod", "status", "subject"}
    ),
    "Provenance": frozenset({"activity", "occurredDateTime", "occurredPeriod", "recorded", "target"}),
    "Questionnaire": frozenset({"code", "date", "description", "effectivePeriod", "identifier", "name", "status"}),
    "QuestionnaireResponse": frozenset({"encounter", "identifier", "status", "subject"}),
    "RegulatedAuthorization": frozenset({"description", "identifier", "status", "subject", "type"}),
    "RelatedPerson": frozenset({"birthDate", "gender", "identifier", "name", "patient", "period"}),
    "RequestGroup": frozenset({"authoredOn", "code", "encounter", "identifier", "status", "subject"}),
    "ResearchDefinition": frozenset({"date", "description", "effectivePeriod", "identifier", "name", "status"}),
    "ResearchElementDefinition": frozenset(
        {"date", "description", "effectivePeriod", "identifier", "name", "status", "type"}
    ),
    "ResearchStudy": frozenset({"category", "condition", "description", "identifier", "period", "status"}),
    "ResearchSubject": frozenset({"identifier", "period", "status"}),
    "RiskAssessment": frozenset(
        {"code", "condition", "encounter", "identifier", "occurrenceDateTime", "occurrencePeriod", "status", "subject"}
    ),
    "Schedule": frozenset({"identifier"}),
    "SearchParameter": frozenset({"code", "component", "date", "description", "name", "status", "target", "type"}),
    "ServiceRequest": frozenset(
        {
            "authoredOn",
            "category",
            "code",
            "encounter",
            "identifier",
            "occurrenceDateTime",
            "occurrencePeriod",
            "status",
            "subject",
        }
    ),
    "Slot": frozenset({"identifier", "status"}),
    "Specimen": frozenset({"condition", "identifier", "status", "subject", "type"}),
    "SpecimenDefinition": frozenset({"identifier"}),
    "StructureDefinition": frozenset({"date", "description", "identifier", "name", "status", "type"}),
    "StructureMap": frozenset({"date", "description", "identifier", "name", "status"}),
    "Subscription": frozenset({"status"}),
    "SubscriptionStatus": frozenset({"status", "type"}),
    "SubscriptionTopic": frozenset({"date", "description", "effectivePeriod", "identifier", "status"}),
    "Substance": frozenset({"category", "code", "description", "identifier", "status"}),
    "SubstanceDefinition": frozenset({"code", "description", "identifier", "name", "status"}),
    "SupplyDelivery": frozenset({"identifier", "occurrenceDateTime", "occurrencePeriod", "patient", "status", "type"}),
    "SupplyRequest": frozenset(
        {"authoredOn", "category", "identifier", "occurrenceDateTime", "occurrencePeriod", "status"}
    ),
    "Task": frozenset({"authoredOn", "code", "description", "encounter", "identifier", "status"}),
    "TerminologyCapabilities": frozenset({"date", "description", "name", "status"}),
    "TestReport": frozenset({"identifier", "issued", "name", "status"}),
    "TestScript": frozenset({"date", "description", "identifier", "name", "status"}),
    "ValueSet": frozenset({"date", "description", "identifier", "name", "status"}),
    "VerificationResult": frozenset({"status", "target"}),
    "VisionPrescription": frozenset({"created", "encounter", "identifier", "patient", "status"}),
}


@dataclass(frozen=True)
class Term:
    """A parameter answered by "term" tokens: what it reads from which element, and on which types."""

    code: str
    type: str  # token or string
    element: str  # the top-level element it reads
    # How the element's values become tokens: "code" (a code), "concept" (a CodeableConcept), "identifier",
    # "name" (every word of a HumanName), "family", "given" (those parts of it).
    reads: str
    types: frozenset[str]
    description: str
    # HL7's canonical for a type ("{type}" filled in), when this is the standard definition.
    standard_url: str = ""
    # A reference's target type, which a bare id in a query names ("encounter=123": Encounter/123).
    target: str = ""


_STATUS_TYPES = frozenset(
    {
        "CarePlan",
        "CareTeam",
        "DiagnosticReport",
        "DocumentReference",
        "Encounter",
        "Immunization",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationRequest",
        "MedicationStatement",
        "Observation",
        "Procedure",
        "ServiceRequest",
    }
)
_CLINICAL_STATUS_TYPES = frozenset({"AllergyIntolerance", "Condition"})
_ENCOUNTER_TYPES = frozenset(
    {
        "AllergyIntolerance",
        "CarePlan",
        "Condition",
        "DiagnosticReport",
        "DocumentReference",
        "Immunization",
        "MedicationAdministration",
        "MedicationRequest",
        "Observation",
        "Procedure",
        "ServiceRequest",
    }
)
_TOKEN_HELP = "code, or system|code (|code: no system); comma-separated alternatives"
_STRING_HELP = "starts with, ignoring case and accents; several words must each start a word of the name"
TERMS = (
    Term("status", "token", "status", "code", _STATUS_TYPES, f"The status: {_TOKEN_HELP}", f"{HL7}/{{type}}-status"),
    Term(
        "clinical-status",
        "token",
        "clinicalStatus",
        "concept",
        _CLINICAL_STATUS_TYPES,
        f"The clinical status: {_TOKEN_HELP}",
        f"{HL7}/{{type}}-clinical-status",
    ),
    Term(
        "verification-status",
        "token",
        "verificationStatus",
        "concept",
        _CLINICAL_STATUS_TYPES,
        f"The verification status: {_TOKEN_HELP}",
        f"{HL7}/{{type}}-verification-status",
    ),
    Term(
        "gender",
        "token",
        "gender",
        "code",
        frozenset({"Patient"}),
        "male, female, other, unknown",
        f"{HL7}/individual-gender",
    ),
    Term(
        "identifier",
        "token",
        "identifier",
        "identifier",
        frozenset({"Patient"}),
        "An identifier: value, or system|value",
        f"{HL7}/Patient-identifier",
    ),
    Term(
        "name",
        "string",
        "name",
        "name",
        frozenset({"Patient"}),
        f"Any part of a name: {_STRING_HELP}",
        f"{HL7}/Patient-name",
    ),
    Term(
        "family",
        "string",
        "name",
        "family",
        frozenset({"Patient"}),
        f"The family name: {_STRING_HELP}",
        f"{HL7}/individual-family",
    ),
    Term(
        "given",
        "string",
        "name",
        "given",
        frozenset({"Patient"}),
        f"A given name: {_STRING_HELP}",
        f"{HL7}/individual-given",
    ),
    Term(
        "encounter",
        "reference",
        "encounter",
        "reference",
        _ENCOUNTER_TYPES,
        "The encounter it belongs to: Encounter/<id> or <id>",
        target="Encounter",
    ),
    Term(
        "target",
        "reference",
        "target",
        "reference",
        frozenset({"Provenance"}),
        "A resource the provenance is about: <type>/<id>",
        f"{HL7}/Provenance-target",
    ),
)
# A string is indexed by its words' prefixes up to this length; a longer query word is cut to it.
PREFIX_MAX = 24


def elements_read() -> frozenset[str]:
    """Every top-level element some parameter reads (the ELEMENTS table holds these, per type)."""
    read = set(DATE_ELEMENTS) | set(PATIENT_ELEMENTS) | {"code", "category", "class"} | {t.element for t in TERMS}
    for paths in MAIN_CODES.values():
        read |= {path.split(".")[0] for path in paths}
    return frozenset(read)


COMMON = (
    SearchParameter("_id", "token", "Resource.id", "Resource ids, comma-separated", "id", f"{HL7}/Resource-id"),
    SearchParameter(
        "_lastUpdated",
        "date",
        "Resource.meta.lastUpdated",
        "When the server stored the current version, to the instant; prefixes eq, ne, gt, ge, lt, le, sa, eb, ap",
        "updated",
        f"{HL7}/Resource-lastUpdated",
    ),
)


def _paths(resource_type: str, paths: tuple[str, ...]) -> tuple[str, ...]:
    present = ELEMENTS.get(resource_type, frozenset())
    return tuple(p for p in paths if p.split(".")[0] in present)


def _expression(resource_type: str, paths: tuple[str, ...]) -> str:
    return " | ".join(f"{resource_type}.{p}" for p in paths)


def _declared(resource_type: str) -> list[SearchParameter]:
    out: list[SearchParameter] = []
    if resource_type != "Patient":
        subjects = _paths(resource_type, PATIENT_ELEMENTS)
        out.append(
            SearchParameter(
                "patient",
                "reference",
                _expression(resource_type, subjects),
                "The patient whose record is searched (Patient/<id> or <id>); patients default to their own",
                "record",
                resource_type=resource_type,
            )
        )
        if "subject" in subjects:
            out.append(
                SearchParameter(
                    "subject",
                    "reference",
                    f"{resource_type}.subject",
                    "Same as patient: subject=Patient/<id>",
                    "record",
                    resource_type=resource_type,
                )
            )
    codes = _paths(resource_type, MAIN_CODES.get(resource_type, DEFAULT_MAIN_CODES))
    if codes:
        out.append(
            SearchParameter(
                "code",
                "token",
                _expression(resource_type, codes),
                "code (any system), system|code or |code (no system); commas for OR, repeat for AND",
                "code",
                resource_type=resource_type,
            )
        )
    categories = _paths(resource_type, CATEGORIES.get(resource_type, DEFAULT_CATEGORIES))
    if categories:
        out.append(
            SearchParameter(
                "category",
                "token",
                _expression(resource_type, categories),
                "system|code, comma-separated alternatives",
                "category",
                resource_type=resource_type,
            )
        )
    present = ELEMENTS.get(resource_type, frozenset())
    for term in TERMS:
        if resource_type in term.types and term.element in present:
            out.append(
                SearchParameter(
                    term.code,
                    term.type,
                    f"{resource_type}.{term.element}" + {"family": ".family", "given": ".given"}.get(term.reads, ""),
                    term.description,
                    "term",
                    term.standard_url.replace("{type}", resource_type),
                    resource_type=resource_type,
                )
            )
    dates = _paths(resource_type, DATE_ELEMENTS)
    if resource_type == "Patient":
        out.append(
            SearchParameter(
                "birthdate",
                "date",
                "Patient.birthDate",
                "The patient's date of birth; prefixes eq, ne, gt, ge, lt, le, sa, eb, ap",
                "date",
                f"{HL7}/individual-birthdate",
                resource_type=resource_type,
            )
        )
    elif dates:
        out.append(
            SearchParameter(
                "date",
                "date",
                _expression(resource_type, dates),
                "The resource's clinical dates, by calendar day; prefixes eq, ne, gt, ge, lt, le, sa, eb, ap",
                "date",
                resource_type=resource_type,
            )
        )
    return out


@lru_cache(maxsize=256)
def search_parameters(resource_type: str) -> dict[str, SearchParameter]:
    """The parameters a search of `resource_type` takes, by name (the common ones first)."""
    return {p.code: p for p in (*COMMON, *_declared(resource_type))}


def search_parameter_by_id(parameter_id: str) -> SearchParameter | None:
    """A definition by its id ("Observation-code", "Resource-id"), for SearchParameter reads."""
    resource_type, _, _ = parameter_id.partition("-")
    for parameter in search_parameters(resource_type).values():
        if parameter.id == parameter_id and not parameter.standard_url:
            return parameter
    return None


# --- Term extraction (what the index stores) and matching (what a query looks for) --------------


def _words(text: str) -> list[str]:
    """A string's words for search: accents dropped, case folded (FHIR string search)."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return [w for w in "".join(c if c.isalnum() else " " for c in plain.casefold()).split() if w]


def _prefixes(words: Iterable[str]) -> set[str]:
    return {word[:length] for word in words for length in range(1, min(len(word), PREFIX_MAX) + 1)}


def _coded(value: Any, code_key: str) -> set[str]:
    """'system|code', '|code' (no system) and the bare 'code' of a Coding or Identifier."""
    code = value.get(code_key) if type(value) is dict else None
    if type(code) is not str:
        return set()
    system = value.get("system")
    return {f"{system if type(system) is str else ''}|{code}", code}


def reference_key(reference: Any) -> str | None:
    """ "Type/id" of a literal reference, relative or absolute (a version dropped); None for anything else."""
    if type(reference) is not str or reference.startswith(("urn:", "#")):
        return None
    parts = reference.split("/_history/", 1)[0].rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2][:1].isupper() or not parts[-2].isalpha() or not parts[-1]:
        return None
    return f"{parts[-2]}/{parts[-1]}"


def reference_elements(resource_type: str, code: str) -> tuple[str, ...]:
    """The elements a reference parameter of the type reads (for _include), () when it is not one."""
    parameter = search_parameters(resource_type).get(code)
    if parameter is None or parameter.type != "reference":
        return ()
    if parameter.index == "record":
        return _paths(resource_type, ("subject",) if code == "subject" else PATIENT_ELEMENTS)
    return tuple(t.element for t in TERMS if t.code == code)


def _term_values(term: Term, value: Any) -> set[str]:
    if term.reads == "reference":
        key = reference_key(value.get("reference")) if type(value) is dict else None
        return {key} if key is not None else set()
    if term.reads == "code":
        return {value} if type(value) is str else set()
    if term.reads == "concept":
        codings = value.get("coding") if type(value) is dict else None
        return {t for c in (codings if type(codings) is list else []) for t in _coded(c, "code")}
    if term.reads == "identifier":
        return _coded(value, "value")
    if type(value) is not dict:
        return set()
    parts: list[Any] = []
    if term.reads in ("name", "family"):
        parts.append(value.get("family"))
    if term.reads in ("name", "given"):
        given = value.get("given")
        parts.extend(given if type(given) is list else [])
    if term.reads == "name":
        parts.append(value.get("text"))
    return _prefixes(w for part in parts if type(part) is str for w in _words(part))


def search_terms(resource: dict[str, Any]) -> frozenset[str]:
    """The "term" tokens' values of one resource: "<parameter>=<value>" for every term parameter of its type."""
    resource_type = resource.get("resourceType", "")
    found: set[str] = set()
    for term in TERMS:
        if resource_type not in term.types:
            continue
        raw = resource.get(term.element)
        for value in raw if type(raw) is list else [raw]:
            found.update(f"{term.code}={v}" for v in _term_values(term, value))
    return frozenset(found)


def term_query(parameter: SearchParameter, raw: str) -> tuple[tuple[str, ...], ...]:
    """The token groups (AND of ORs, as "<parameter>=<value>") one query value of a term parameter asks for."""
    if parameter.type == "string":
        words = _words(raw)
        return tuple((f"{parameter.code}={word[:PREFIX_MAX]}",) for word in words) or ((f"{parameter.code}=",),)
    alternatives = [part.strip() for part in raw.split(",") if part.strip()]
    term = next(t for t in TERMS if t.code == parameter.code)
    if term.reads == "reference":
        keys = [reference_key(a) if "/" in a else f"{term.target}/{a}" if term.target else None for a in alternatives]
        return (tuple(f"{parameter.code}={key}" for key in keys if key) or (f"{parameter.code}=",),)
    # A plain code has no system to search by: "system|final" asks for "final".
    values = [a.rpartition("|")[2] if term.reads == "code" else a for a in alternatives]
    return (tuple(f"{parameter.code}={value}" for value in values) or (f"{parameter.code}=",),)
