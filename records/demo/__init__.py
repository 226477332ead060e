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

import random
import uuid
from datetime import date
from typing import Any

from records.demo.codes import DEMO_NAMESPACE, MEDICATIONS, SMOKING_STATUS
from records.demo.profile import _drift_weight, _is_lab_visit, _profile, _visit_times
from records.demo.resources import (
    _add_care_team,
    _add_labs,
    _add_patient,
    _add_vitals,
    _Builder,
    _condition,
    _Context,
    _encounter,
    _medication_request,
    _smoking_answer,
)

DEFAULT_END = date(2025, 6, 30)
# The seed `seed_demo` uses: a patient with all three chronic conditions, so the demo shows every trend.
DEMO_PATIENT_SEED = 57


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


__all__ = ["DEFAULT_END", "DEMO_NAMESPACE", "DEMO_PATIENT_SEED", "generate_patient_bundle"]
