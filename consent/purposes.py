"""HL7 v3 PurposeOfUse codes the project accepts, and the actions a grant can allow."""

from __future__ import annotations

from django.db import models

PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


class Purpose(models.TextChoices):
    TREAT = "TREAT", "Treatment"
    ETREAT = "ETREAT", "Emergency treatment (break-glass)"
    CAREMGT = "CAREMGT", "Care management"
    HRESCH = "HRESCH", "Healthcare research"
    CLINTRCH = "CLINTRCH", "Clinical trial research"
    PATRQT = "PATRQT", "Patient requested"
    PUBHLTH = "PUBHLTH", "Public health"
    HPAYMT = "HPAYMT", "Healthcare payment"
    HOPERAT = "HOPERAT", "Healthcare operations"


class Action(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    RUN_MODEL = "run-model", "Run an AI model"
    RUN_ANALYSIS = "run-analysis", "Run a study's approved analyses"


# A patient may grant these purposes; PATRQT is the patient's own access and ETREAT is break-glass.
GRANTABLE_PURPOSES = frozenset(
    {Purpose.TREAT, Purpose.CAREMGT, Purpose.HRESCH, Purpose.CLINTRCH, Purpose.PUBHLTH, Purpose.HPAYMT, Purpose.HOPERAT}
)
ALL_RESOURCE_TYPES = "*"


class BreakGlassCode(models.TextChoices):
    """Why a clinician breaks the glass: the coded half of a break-glass reason (X-Break-Glass-Code)."""

    UNCONSCIOUS_PATIENT = "unconscious-patient", "The patient is unconscious"
    EMERGENCY_TREATMENT = "emergency-treatment", "Emergency treatment cannot wait for consent"
    PATIENT_UNABLE_TO_CONSENT = "patient-unable-to-consent", "The patient is unable to consent"
    CLINICAL_DETERIORATION = "clinical-deterioration", "The patient's condition is deteriorating"


# What break-glass may open: the clinical picture an emergency needs, allow-listed, so a type added
# to FHIR or to the store stays closed until someone decides it is clinical. Billing and insurance
# (Claim, ExplanationOfBenefit, Coverage, Account, Invoice ...), administration and provenance are not.
BREAK_GLASS_TYPES = frozenset(
    {
        "Patient",
        "AllergyIntolerance",
        "CarePlan",
        "CareTeam",
        "ClinicalImpression",
        "Condition",
        "Device",
        "DeviceUseStatement",
        "DiagnosticReport",
        "DocumentReference",
        "Encounter",
        "FamilyMemberHistory",
        "Goal",
        "ImagingStudy",
        "Immunization",
        "Medication",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationRequest",
        "MedicationStatement",
        "Observation",
        "Procedure",
        "ServiceRequest",
        "Specimen",
    }
)
