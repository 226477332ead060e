"""The portal's views, one module per area (auth, patient record, sharing, clinician, AI)."""
