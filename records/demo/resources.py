"""Demo patients of the project's own: FHIR R4 transaction Bundles from a seed.

`generate_patient_bundle(seed)` makes one fictional adult followed for a few years
in primary care: twice-yearly check-ups with vital signs, yearly lipid and
metabolic panels, smoking status, chronic conditions diagnosed along the way
(SNOMED CT) and the medications started for them (RxNorm), with values that
drift towards the diagnosis and improve once treatment starts.

Pure and deterministic: no Django, no I/O, no clock and no global randomness.
Ids are uuid5 of the seed and dates count back from a fixed anchor, so the same
arguments give the same JSON bytes on every machine, which keeps `seed_demo`
idempotent and its tests exact. Everything here is invented; no real person.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

Resource = dict[str, Any]

# uuid5 namespace of every id this module makes (itself a uuid5 of a fixed name).
DEMO_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://healthledger.invalid/demo")
DEFAULT_END = date(2025, 6, 30)
# The seed `seed_demo` uses: a patient with all three chronic conditions, so the demo shows every trend.
DEMO_PATIENT_SEED = 57

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


@dataclass
class _Profile:
    """Who the patient is and how their numbers move; drawn once from the seed."""

    sex: str
    given: str
    family: str
    birth_date: date
    height_cm: float
    bmi: float
    smoking: str
    conditions: dict[str, int] = field(default_factory=dict)  # condition -> visit index of diagnosis
    hdl: float = 50.0
    triglycerides: float = 130.0
    creatinine: float = 0.9


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


def generate_patient_bundle(seed: int, *, years: int = 5, end: date = DEFAULT_END) -> dict[str, Any]:
    """One fictional patient followed for `years` years up to `end`, as a FHIR R4 transaction Bundle."""
    if years < 1:
        raise ValueError("years must be at least 1")
    rng = random.Random(seed)  # noqa: S311 - demo data, not a secret
    visits = _visit_times(rng, years=years, end=end)
    profile = _profile(rng, visit_count=len(visits), end=end)
    builder = _Builder(seed)
    patient_ref = _add_patient(builder, profile, seed=seed, rng=rng)
    organization_ref, practitioner_ref = _add_care_team(builder, rng)
    condition_refs: dict[str, str] = {}
    weight = profile.bmi * (profile.height_cm / 100) ** 2
    for index, when in enumerate(visits):
        encounter_ref = builder.add(
            _encounter(builder.new_id("encounter"), patient_ref, practitioner_ref, organization_ref, when)
        )
        context = _Context(builder, patient_ref, encounter_ref, when)
        weight = _drift_weight(rng, profile, index, weight)
        _add_vitals(context, rng, profile, index, weight)
        is_lab_visit = _is_lab_visit(index, len(visits))
        if index == 0 or is_lab_visit:
            context.observation(SMOKING_STATUS, "social-history", {"valueCodeableConcept": _smoking_answer(profile)})
        if is_lab_visit:
            _add_labs(context, rng, profile, index)
        for name, diagnosed_at in profile.conditions.items():
            if diagnosed_at == index:
                condition_refs[name] = builder.add(_condition(builder.new_id("condition"), name, context))
                if name in MEDICATIONS:
                    builder.add(
                        _medication_request(
                            builder.new_id("medication"), name, context, practitioner_ref, condition_refs[name]
                        )
                    )
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(DEMO_NAMESPACE, f"{seed}/bundle")),
        "type": "transaction",
        "entry": builder.entries,
    }


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


def _visit_times(rng: random.Random, *, years: int, end: date) -> list[datetime]:
    """Twice-yearly check-ups ending at `end`, on weekdays in office hours."""
    count = years * 2
    times = []
    for back in range(count - 1, -1, -1):
        day = end - timedelta(days=182 * back + rng.randint(0, 20))
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        minute = rng.randrange(8 * 60, 16 * 60 + 30, 15)
        times.append(datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=UTC))
    return times


def _profile(rng: random.Random, *, visit_count: int, end: date) -> _Profile:
    sex = rng.choice(("female", "male"))
    age = rng.randint(42, 74)
    profile = _Profile(
        sex=sex,
        given=rng.choice(GIVEN_FEMALE if sex == "female" else GIVEN_MALE),
        family=rng.choice(FAMILY),
        birth_date=date(end.year - age, rng.randint(1, 12), rng.randint(1, 28)),
        height_cm=rng.gauss(164 if sex == "female" else 177, 6),
        bmi=rng.uniform(23.0, 34.0),
        smoking=rng.choices(("never", "former", "current"), weights=(6, 3, 2))[0],
        hdl=rng.gauss(56 if sex == "female" else 46, 6),
        triglycerides=rng.uniform(90, 190),
        creatinine=rng.gauss(0.8 if sex == "female" else 1.0, 0.08),
    )
    # Diagnoses fall in the first half of the window so the record shows life after treatment;
    # the ones made on blood tests fall on a visit that has them.
    latest = max(1, visit_count // 2)
    lab_visits = [i for i in range(1, latest + 1) if _is_lab_visit(i, visit_count)] or [visit_count - 1]
    if rng.random() < 0.6:
        profile.conditions["hypertension"] = rng.randint(1, latest)
    roll = rng.random()
    if roll < 0.35:
        profile.conditions["diabetes"] = rng.choice(lab_visits)
    elif roll < 0.6:
        profile.conditions["prediabetes"] = 0
    if rng.random() < 0.5:
        profile.conditions["hyperlipidemia"] = rng.choice(lab_visits)
    if not profile.conditions:
        profile.conditions["hypertension"] = latest
    if profile.bmi >= 30:
        profile.conditions["obesity"] = 0
    profile.conditions = dict(sorted(profile.conditions.items(), key=lambda item: (item[1], item[0])))
    return profile


def _is_lab_visit(index: int, visit_count: int) -> bool:
    """Blood is drawn once a year: on every other visit, counting back from the latest."""
    return (visit_count - 1 - index) % 2 == 0


def _trend(index: int, diagnosed_at: int | None, *, healthy: float, peak: float, treated: float) -> float:
    """A value that climbs from `healthy` to `peak` at diagnosis, then settles towards `treated`."""
    if diagnosed_at is None:
        return healthy
    if index <= diagnosed_at:
        return healthy + (peak - healthy) * (index / diagnosed_at if diagnosed_at else 1.0)
    return treated + (peak - treated) * math.exp(-(index - diagnosed_at) / 1.5)


def _drift_weight(rng: random.Random, profile: _Profile, index: int, weight: float) -> float:
    dx = profile.conditions.get("diabetes")
    if dx is not None and index > dx:
        return weight - 0.4 + rng.gauss(0, 0.5)  # lifestyle advice and metformin after the diagnosis
    return weight + 0.25 + rng.gauss(0, 0.5)


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
