"""The clinician's FHIR REST API (R4B, FHIR 4.3.0) under /fhir."""
