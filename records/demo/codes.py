"""What the demo generator writes with: code systems, the codes and units of each kind of resource, the pools
names and addresses are drawn from, and the namespace of every id it makes. All invented or public terminology."""

from __future__ import annotations

import uuid
from typing import Any

Resource = dict[str, Any]

# uuid5 namespace of every id the demo generator makes (itself a uuid5 of a fixed name).
DEMO_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://healthledger.invalid/demo")

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
IDENTIFIER_SYSTEM = "https://healthledger.invalid/fhir/demo-patient"

# LOINC code -> (display, UCUM unit) for every quantity this generator writes.
VITALS: dict[str, tuple[str, str]] = {
    "8480-6": ("Systolic blood pressure", "mm[Hg]"),
    "8462-4": ("Diastolic blood pressure", "mm[Hg]"),
    "8867-4": ("Heart rate", "/min"),
    "9279-1": ("Respiratory rate", "/min"),
    "8310-5": ("Body temperature", "Cel"),
    "29463-7": ("Body weight", "kg"),
    "8302-2": ("Body height", "cm"),
    "39156-5": ("Body mass index (BMI) [Ratio]", "kg/m2"),
    "59408-5": ("Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
}
LABS: dict[str, tuple[str, str]] = {
    "2093-3": ("Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL"),
    "2085-9": ("Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL"),
    "18262-6": ("Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", "mg/dL"),
    "2571-8": ("Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL"),
    "2339-0": ("Glucose [Mass/volume] in Blood", "mg/dL"),
    "2160-0": ("Creatinine [Mass/volume] in Serum or Plasma", "mg/dL"),
    "4548-4": ("Hemoglobin A1c/Hemoglobin.total in Blood", "%"),
}
# Decimal places as a clinic would report them; the rest are whole numbers.
DECIMALS = {"8310-5": 1, "29463-7": 1, "8302-2": 1, "39156-5": 1, "2160-0": 2, "4548-4": 1}
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
LIPID_PANEL = ("57698-3", "Lipid panel with direct LDL - Serum or Plasma")
SMOKING_STATUS = ("72166-2", "Tobacco smoking status")
SMOKING_ANSWERS = {
    "never": ("266919005", "Never smoked tobacco (finding)"),
    "former": ("8517006", "Ex-smoker (finding)"),
    "current": ("449868002", "Smokes tobacco daily (finding)"),
}
CONDITIONS = {
    "hypertension": ("38341003", "Hypertensive disorder, systemic arterial (disorder)"),
    "diabetes": ("44054006", "Diabetes mellitus type 2 (disorder)"),
    "prediabetes": ("714628002", "Prediabetes (finding)"),
    "hyperlipidemia": ("55822004", "Hyperlipidemia (disorder)"),
    "obesity": ("162864005", "Body mass index 30+ - obesity (finding)"),
}
# condition -> (RxNorm code, display, dosage text, times a day)
MEDICATIONS = {
    "hypertension": ("314076", "lisinopril 10 MG Oral Tablet", "1 tablet by mouth once daily", 1),
    "diabetes": ("861007", "metformin hydrochloride 500 MG Oral Tablet", "1 tablet by mouth twice daily with meals", 2),
    "hyperlipidemia": ("617310", "atorvastatin 20 MG Oral Tablet", "1 tablet by mouth once daily at bedtime", 1),
}

GIVEN_FEMALE = ("Ada", "Beatriz", "Chiara", "Dorothea", "Elif", "Freya", "Greta", "Hanna", "Ines", "Jolene")
GIVEN_MALE = ("Anton", "Bruno", "Cyril", "Dario", "Emil", "Felix", "Gustav", "Henrik", "Ivo", "Jonas")
FAMILY = ("Abernathy", "Brightwater", "Castellano", "Drummond", "Eklund", "Fairweather", "Galloway", "Hollis")
STREETS = ("Linden Way", "Orchard Lane", "Harbor Road", "Maple Court", "Quarry Street", "Willow Row")
CITIES = (("Springfield", "MA", "01103"), ("Riverton", "NH", "03870"), ("Fairhaven", "ME", "04011"))
