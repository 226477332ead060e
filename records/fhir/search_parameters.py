"""The search parameters of each record type, declared once: the parser, the CapabilityStatement and the docs follow.

Each parameter says what it searches (a FHIRPath expression, for the reader and the
CapabilityStatement) and which column of the blind index (or of the row) answers it: the
index's extraction is records.fhir.index, whose element tables the expressions are built
from, so a path added there shows here. A type gets a parameter only when it has an element
that parameter reads (no `code` on Patient).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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
    # What answers it: "record" (the record searched), "id", "code", "category", "date" (blind-index tokens),
    # "updated" (the row's last update, in the clear).
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
    "Account": frozenset({"description", "subject", "type"}),
    "ActivityDefinition": frozenset({"code", "date", "description", "effectivePeriod"}),
    "AdverseEvent": frozenset({"category", "date", "recordedDate", "subject"}),
    "AllergyIntolerance": frozenset(
        {"category", "code", "onsetDateTime", "onsetPeriod", "patient", "recordedDate", "type"}
    ),
    "Appointment": frozenset({"created", "description"}),
    "AuditEvent": frozenset({"period", "recorded", "subtype", "type"}),
    "Basic": frozenset({"code", "created", "subject"}),
    "BodyStructure": frozenset({"description", "patient"}),
    "Bundle": frozenset({"type"}),
    "CapabilityStatement": frozenset({"date", "description"}),
    "CarePlan": frozenset({"activity", "category", "created", "description", "period", "subject"}),
    "CareTeam": frozenset({"category", "period", "subject"}),
    "CatalogEntry": frozenset({"type"}),
    "ChargeItem": frozenset({"code", "occurrenceDateTime", "occurrencePeriod", "subject"}),
    "ChargeItemDefinition": frozenset({"code", "date", "description", "effectivePeriod"}),
    "Citation": frozenset({"date", "description", "effectivePeriod"}),
    "Claim": frozenset({"billablePeriod", "created", "patient", "type"}),
    "ClaimResponse": frozenset({"created", "patient", "type"}),
    "ClinicalImpression": frozenset({"code", "date", "description", "effectiveDateTime", "effectivePeriod", "subject"}),
    "ClinicalUseDefinition": frozenset({"category", "subject", "type"}),
    "CodeSystem": frozenset({"date", "description"}),
    "Communication": frozenset({"category", "subject"}),
    "CommunicationRequest": frozenset({"authoredOn", "category", "occurrenceDateTime", "occurrencePeriod", "subject"}),
    "CompartmentDefinition": frozenset({"code", "date", "description"}),
    "Composition": frozenset({"category", "date", "subject", "type"}),
    "ConceptMap": frozenset({"date", "description"}),
    "Condition": frozenset({"category", "code", "onsetDateTime", "onsetPeriod", "recordedDate", "subject"}),
    "Consent": frozenset({"category", "dateTime", "patient", "scope"}),
    "Contract": frozenset({"issued", "scope", "subject", "type"}),
    "Coverage": frozenset({"beneficiary", "class", "period", "type"}),
    "CoverageEligibilityRequest": frozenset({"created", "patient"}),
    "CoverageEligibilityResponse": frozenset({"created", "patient"}),
    "DetectedIssue": frozenset({"code", "patient"}),
    "Device": frozenset({"patient", "type"}),
    "DeviceDefinition": frozenset({"type"}),
    "DeviceMetric": frozenset({"category", "type"}),
    "DeviceRequest": frozenset(
        {"authoredOn", "codeCodeableConcept", "occurrenceDateTime", "occurrencePeriod", "subject"}
    ),
    "DeviceUseStatement": frozenset({"subject"}),
    "DiagnosticReport": frozenset({"category", "code", "effectiveDateTime", "effectivePeriod", "issued", "subject"}),
    "DocumentManifest": frozenset({"created", "description", "subject", "type"}),
    "DocumentReference": frozenset({"category", "date", "description", "subject", "type"}),
    "Encounter": frozenset({"class", "period", "subject", "type"}),
    "Endpoint": frozenset({"period"}),
    "EnrollmentRequest": frozenset({"created"}),
    "EnrollmentResponse": frozenset({"created"}),
    "EpisodeOfCare": frozenset({"patient", "period", "type"}),
    "EventDefinition": frozenset({"date", "description", "effectivePeriod"}),
    "Evidence": frozenset({"date", "description"}),
    "EvidenceReport": frozenset({"subject", "type"}),
    "EvidenceVariable": frozenset({"category", "date", "description"}),
    "ExampleScenario": frozenset({"date"}),
    "ExplanationOfBenefit": frozenset({"billablePeriod", "created", "patient", "type"}),
    "FamilyMemberHistory": frozenset({"condition", "date", "patient"}),
    "Flag": frozenset({"category", "code", "period", "subject"}),
    "Goal": frozenset({"category", "description", "startDate", "subject"}),
    "GraphDefinition": frozenset({"date", "description"}),
    "Group": frozenset({"code", "type"}),
    "GuidanceResponse": frozenset({"occurrenceDateTime", "subject"}),
    "HealthcareService": frozenset({"category", "type"}),
    "ImagingStudy": frozenset({"description", "modality", "procedureCode", "series", "started", "subject"}),
    "Immunization": frozenset({"occurrenceDateTime", "patient", "recorded", "vaccineCode"}),
    "ImmunizationEvaluation": frozenset({"date", "description", "patient", "series"}),
    "ImmunizationRecommendation": frozenset({"date", "patient"}),
    "ImplementationGuide": frozenset({"date", "description"}),
    "InsurancePlan": frozenset({"period", "type"}),
    "Invoice": frozenset({"date", "subject", "type"}),
    "Library": frozenset({"date", "description", "effectivePeriod", "type"}),
    "List": frozenset({"code", "date", "subject"}),
    "Location": frozenset({"description", "type"}),
    "Measure": frozenset({"date", "description", "effectivePeriod", "type"}),
    "MeasureReport": frozenset({"date", "period", "subject", "type"}),
    "Media": frozenset({"issued", "modality", "subject", "type"}),
    "Medication": frozenset({"code"}),
    "MedicationAdministration": frozenset(
        {"category", "effectiveDateTime", "effectivePeriod", "medicationCodeableConcept", "subject"}
    ),
    "MedicationDispense": frozenset({"category", "medicationCodeableConcept", "subject", "type"}),
    "MedicationKnowledge": frozenset({"code"}),
    "MedicationRequest": frozenset({"authoredOn", "category", "medicationCodeableConcept", "subject"}),
    "MedicationStatement": frozenset(
        {"category", "dateAsserted", "effectiveDateTime", "effectivePeriod", "medicationCodeableConcept", "subject"}
    ),
    "MedicinalProductDefinition": frozenset({"code", "description", "type"}),
    "MessageDefinition": frozenset({"category", "date", "description"}),
    "MolecularSequence": frozenset({"patient", "type"}),
    "NamingSystem": frozenset({"date", "description", "type"}),
    "NutritionOrder": frozenset({"dateTime", "patient"}),
    "NutritionProduct": frozenset({"category", "code"}),
    "Observation": frozenset(
        {
            "category",
            "code",
            "component",
            "effectiveDateTime",
            "effectiveInstant",
            "effectivePeriod",
            "issued",
            "subject",
        }
    ),
    "ObservationDefinition": frozenset({"category", "code"}),
    "OperationDefinition": frozenset({"code", "date", "description", "type"}),
    "Organization": frozenset({"type"}),
    "OrganizationAffiliation": frozenset({"code", "period"}),
    "PackagedProductDefinition": frozenset({"description", "type"}),
    "Patient": frozenset({"birthDate"}),
    "PaymentNotice": frozenset({"created"}),
    "PaymentReconciliation": frozenset({"created", "period"}),
    "Person": frozenset({"birthDate"}),
    "PlanDefinition": frozenset({"date", "description", "effectivePeriod", "type"}),
    "Practitioner": frozenset({"birthDate"}),
    "PractitionerRole": frozenset({"code", "period"}),
    "Procedure": frozenset({"category", "code", "performedDateTime", "performedPeriod", "subject"}),
    "Provenance": frozenset({"activity", "occurredDateTime", "occurredPeriod", "recorded"}),
    "Questionnaire": frozenset({"code", "date", "description", "effectivePeriod"}),
    "QuestionnaireResponse": frozenset({"subject"}),
    "RegulatedAuthorization": frozenset({"description", "subject", "type"}),
    "RelatedPerson": frozenset({"birthDate", "patient", "period"}),
    "RequestGroup": frozenset({"authoredOn", "code", "subject"}),
    "ResearchDefinition": frozenset({"date", "description", "effectivePeriod"}),
    "ResearchElementDefinition": frozenset({"date", "description", "effectivePeriod", "type"}),
    "ResearchStudy": frozenset({"category", "condition", "description", "period"}),
    "ResearchSubject": frozenset({"period"}),
    "RiskAssessment": frozenset({"code", "condition", "occurrenceDateTime", "occurrencePeriod", "subject"}),
    "SearchParameter": frozenset({"code", "component", "date", "description", "type"}),
    "ServiceRequest": frozenset(
        {"authoredOn", "category", "code", "occurrenceDateTime", "occurrencePeriod", "subject"}
    ),
    "Specimen": frozenset({"condition", "subject", "type"}),
    "StructureDefinition": frozenset({"date", "description", "type"}),
    "StructureMap": frozenset({"date", "description"}),
    "SubscriptionStatus": frozenset({"type"}),
    "SubscriptionTopic": frozenset({"date", "description", "effectivePeriod"}),
    "Substance": frozenset({"category", "code", "description"}),
    "SubstanceDefinition": frozenset({"code", "description"}),
    "SupplyDelivery": frozenset({"occurrenceDateTime", "occurrencePeriod", "patient", "type"}),
    "SupplyRequest": frozenset({"authoredOn", "category", "occurrenceDateTime", "occurrencePeriod"}),
    "Task": frozenset({"authoredOn", "code", "description"}),
    "TerminologyCapabilities": frozenset({"date", "description"}),
    "TestReport": frozenset({"issued"}),
    "TestScript": frozenset({"date", "description"}),
    "ValueSet": frozenset({"date", "description"}),
    "VisionPrescription": frozenset({"created", "patient"}),
}

COMMON = (
    SearchParameter("_id", "token", "Resource.id", "Resource ids, comma-separated", "id", f"{HL7}/Resource-id"),
    SearchParameter(
        "_lastUpdated",
        "date",
        "Resource.meta.lastUpdated",
        "When the server stored the current version, to the instant; prefixes eq, ge, gt, le, lt",
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
                "system|code (|code for none), comma-separated alternatives; repeat the parameter to require several",
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
    dates = _paths(resource_type, DATE_ELEMENTS)
    if resource_type == "Patient":
        out.append(
            SearchParameter(
                "birthdate",
                "date",
                "Patient.birthDate",
                "The patient's date of birth; prefixes eq, ge, gt, le, lt",
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
                "The resource's clinical dates, by calendar day; prefixes eq, ge, gt, le, lt",
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
