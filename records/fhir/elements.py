"""The top-level elements of each type that a search parameter reads (records.fhir.search_parameters)."""

from __future__ import annotations

import importlib
from functools import lru_cache

# The top-level elements of each type that a search parameter reads, from the fhir.resources R4B models
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
            "valueQuantity",
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


@lru_cache(maxsize=256)
def summary_elements(resource_type: str) -> frozenset[str]:
    """The top-level elements the specification marks as summary (`_summary=true`), from the R4B model.

    Imported on first use, per type: importing every model costs seconds.
    """
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    fields = getattr(module, resource_type).model_fields
    return frozenset(
        field.alias or name
        for name, field in fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("summary_element_property")
    )
