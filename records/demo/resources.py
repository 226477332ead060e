"""The FHIR resources of a demo record: the bundle builder, one visit's Observations and lab report, the Patient,
her care team, Encounters, Conditions and MedicationRequests."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from records.demo.codes import (
    ACT_CODE,
    BP_PANEL,
    CITIES,
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    CONDITIONS,
    DECIMALS,
    DEMO_NAMESPACE,
    DIAGNOSTIC_SERVICE,
    FAMILY,
    GIVEN_FEMALE,
    GIVEN_MALE,
    IDENTIFIER_SYSTEM,
    LABS,
    LIPID_PANEL,
    LOINC,
    MEDICATIONS,
    OBSERVATION_CATEGORY,
    RXNORM,
    SMOKING_ANSWERS,
    SNOMED,
    STREETS,
    UCUM,
    VITALS,
    Resource,
)
from records.demo.profile import _Profile, _trend


class _Builder:
    """Accumulates bundle entries with ids derived from the seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.entries: list[Resource] = []
        self.counter = 0

    def new_id(self, kind: str) -> str:
        self.counter += 1
        return str(uuid.uuid5(DEMO_NAMESPACE, f"{self.seed}/{kind}/{self.counter}"))

    def add(self, resource: Resource) -> str:
        """Add a resource (its id already set) and return the urn:uuid that references it."""
        full_url = f"urn:uuid:{resource['id']}"
        self.entries.append(
            {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
        )
        return full_url


@dataclass
class _Context:
    """Where the resources of one visit point: patient, encounter, time."""

    builder: _Builder
    patient_ref: str
    encounter_ref: str
    when: datetime

    def observation(self, code: tuple[str, str], category: str, value: Resource) -> str:
        resource: Resource = {
            "resourceType": "Observation",
            "id": self.builder.new_id("observation"),
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category, "display": _title(category)}]}],
            "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}], "text": code[1]},
            "subject": {"reference": self.patient_ref},
            "encounter": {"reference": self.encounter_ref},
            "effectiveDateTime": _instant(self.when),
            "issued": _instant(self.when + (timedelta(hours=4) if category == "laboratory" else timedelta())),
            **value,
        }
        return self.builder.add(resource)

    def quantity(self, loinc: str, value: float, category: str) -> str:
        display = (VITALS | LABS)[loinc][0]
        return self.observation((loinc, display), category, {"valueQuantity": _quantity(loinc, value)})


def _quantity(loinc: str, value: float) -> Resource:
    unit = (VITALS | LABS)[loinc][1]
    digits = DECIMALS.get(loinc, 0)
    number: float | int = round(value, digits) if digits else round(value)
    return {"value": number, "unit": unit, "system": UCUM, "code": unit}


def _add_vitals(context: _Context, rng: random.Random, profile: _Profile, index: int, weight: float) -> None:
    systolic = _trend(index, profile.conditions.get("hypertension"), healthy=rng.gauss(118, 4), peak=148, treated=128)
    systolic += rng.gauss(0, 3)
    diastolic = 0.62 * systolic + 5 + rng.gauss(0, 2.5)
    components = [
        {
            "code": {
                "coding": [{"system": LOINC, "code": loinc, "display": VITALS[loinc][0]}],
                "text": VITALS[loinc][0],
            },
            "valueQuantity": _quantity(loinc, value),
        }
        for loinc, value in (("8480-6", systolic), ("8462-4", diastolic))
    ]
    context.observation(BP_PANEL, "vital-signs", {"component": components})
    smoker = profile.smoking == "current"
    height_m = profile.height_cm / 100
    context.quantity("8867-4", rng.gauss(78 if smoker else 70, 5), "vital-signs")
    context.quantity("9279-1", rng.randint(12, 18), "vital-signs")
    context.quantity("8310-5", rng.gauss(36.8, 0.2), "vital-signs")
    context.quantity("8302-2", profile.height_cm + rng.gauss(0, 0.3), "vital-signs")
    context.quantity("29463-7", weight, "vital-signs")
    context.quantity("39156-5", weight / (height_m * height_m), "vital-signs")
    context.quantity("59408-5", min(100.0, rng.gauss(95.5 if smoker else 97.5, 0.8)), "vital-signs")


def _add_labs(context: _Context, rng: random.Random, profile: _Profile, index: int) -> None:
    total = _trend(index, profile.conditions.get("hyperlipidemia"), healthy=rng.gauss(188, 10), peak=252, treated=176)
    total += rng.gauss(0, 6)
    hdl = profile.hdl + rng.gauss(0, 3)
    triglycerides = profile.triglycerides * (1.3 if "hyperlipidemia" in profile.conditions else 1.0)
    triglycerides += rng.gauss(0, 15)
    ldl = total - hdl - triglycerides / 5 + rng.gauss(0, 4)  # Friedewald, with a direct assay's scatter
    healthy_glucose = 108.0 if "prediabetes" in profile.conditions else 90.0
    glucose = _trend(index, profile.conditions.get("diabetes"), healthy=healthy_glucose + 6, peak=168, treated=122)
    glucose += rng.gauss(0, 5)
    hba1c = (glucose + 46.7) / 28.7 + rng.gauss(0, 0.1)  # ADAG: estimated average glucose and HbA1c
    results = [
        context.quantity(loinc, value, "laboratory")
        for loinc, value in (("2093-3", total), ("2085-9", hdl), ("18262-6", ldl), ("2571-8", triglycerides))
    ]
    context.quantity("2339-0", glucose, "laboratory")
    context.quantity("2160-0", profile.creatinine + rng.gauss(0, 0.05), "laboratory")
    context.quantity("4548-4", hba1c, "laboratory")
    context.builder.add(
        {
            "resourceType": "DiagnosticReport",
            "id": context.builder.new_id("report"),
            "status": "final",
            "category": [{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "LAB", "display": "Laboratory"}]}],
            "code": {
                "coding": [{"system": LOINC, "code": LIPID_PANEL[0], "display": LIPID_PANEL[1]}],
                "text": LIPID_PANEL[1],
            },
            "subject": {"reference": context.patient_ref},
            "encounter": {"reference": context.encounter_ref},
            "effectiveDateTime": _instant(context.when),
            "issued": _instant(context.when + timedelta(hours=4)),
            "result": [{"reference": ref} for ref in results],
        }
    )


def _smoking_answer(profile: _Profile) -> Resource:
    code, display = SMOKING_ANSWERS[profile.smoking]
    return {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display}


def _add_patient(builder: _Builder, profile: _Profile, *, seed: int, rng: random.Random) -> str:
    city, state, postal_code = rng.choice(CITIES)
    return builder.add(
        {
            "resourceType": "Patient",
            "id": builder.new_id("patient"),
            "identifier": [{"system": IDENTIFIER_SYSTEM, "value": f"demo-{seed}"}],
            "active": True,
            "name": [{"use": "official", "family": profile.family, "given": [profile.given]}],
            # 555-01xx numbers are reserved for fiction.
            "telecom": [{"system": "phone", "value": f"555-01{rng.randint(0, 99):02d}", "use": "home"}],
            "gender": profile.sex,
            "birthDate": profile.birth_date.isoformat(),
            "address": [
                {
                    "line": [f"{rng.randint(2, 240)} {rng.choice(STREETS)}"],
                    "city": city,
                    "state": state,
                    "postalCode": postal_code,
                    "country": "US",
                }
            ],
        }
    )


def _add_care_team(builder: _Builder, rng: random.Random) -> tuple[str, str]:
    organization = builder.add(
        {
            "resourceType": "Organization",
            "id": builder.new_id("organization"),
            "active": True,
            "type": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                            "code": "prov",
                            "display": "Healthcare Provider",
                        }
                    ]
                }
            ],
            "name": "Linden Family Practice (demo)",
        }
    )
    practitioner = builder.add(
        {
            "resourceType": "Practitioner",
            "id": builder.new_id("practitioner"),
            "active": True,
            "name": [
                {"family": rng.choice(FAMILY), "given": [rng.choice(GIVEN_FEMALE + GIVEN_MALE)], "prefix": ["Dr."]}
            ],
        }
    )
    return organization, practitioner


def _encounter(
    resource_id: str, patient_ref: str, practitioner_ref: str, organization_ref: str, when: datetime
) -> Resource:
    return {
        "resourceType": "Encounter",
        "id": resource_id,
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "type": [
            {
                "coding": [{"system": SNOMED, "code": "185349003", "display": "Encounter for check up (procedure)"}],
                "text": "Encounter for check up",
            }
        ],
        "subject": {"reference": patient_ref},
        "participant": [{"individual": {"reference": practitioner_ref}}],
        "period": {"start": _instant(when), "end": _instant(when + timedelta(minutes=20))},
        "serviceProvider": {"reference": organization_ref},
    }


def _condition(resource_id: str, name: str, context: _Context) -> Resource:
    code, display = CONDITIONS[name]
    return {
        "resourceType": "Condition",
        "id": resource_id,
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]},
        "category": [
            {"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item", "display": "Problem List Item"}]}
        ],
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
        "subject": {"reference": context.patient_ref},
        "encounter": {"reference": context.encounter_ref},
        "onsetDateTime": _instant(context.when),
        "recordedDate": _instant(context.when),
    }


def _medication_request(
    resource_id: str, condition: str, context: _Context, practitioner_ref: str, condition_ref: str
) -> Resource:
    code, display, instructions, per_day = MEDICATIONS[condition]
    return {
        "resourceType": "MedicationRequest",
        "id": resource_id,
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": display}],
            "text": display,
        },
        "subject": {"reference": context.patient_ref},
        "encounter": {"reference": context.encounter_ref},
        "authoredOn": _instant(context.when),
        "requester": {"reference": practitioner_ref},
        "reasonReference": [{"reference": condition_ref}],
        "dosageInstruction": [
            {
                "sequence": 1,
                "text": instructions,
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "route": {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet", "system": UCUM, "code": "{tbl}"}}],
            }
        ],
    }


def _instant(when: datetime) -> str:
    return when.isoformat()


def _title(category: str) -> str:
    return {"vital-signs": "Vital Signs", "laboratory": "Laboratory", "social-history": "Social History"}[category]
