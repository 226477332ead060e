"""Demo patients of the project's own: FHIR R4 transaction Bundles from a seed (see records.demo.resources)."""

from __future__ import annotations

from records.demo.resources import DEFAULT_END, DEMO_NAMESPACE, DEMO_PATIENT_SEED, generate_patient_bundle

__all__ = ["DEFAULT_END", "DEMO_NAMESPACE", "DEMO_PATIENT_SEED", "generate_patient_bundle"]
