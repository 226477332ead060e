"""AI diagnostic models: pure computation, no Django and no I/O (an import-linter contract says so).

Each model declares what it is and exactly which FHIR inputs it needs
(`ModelSpec`, `InputSpec`), and turns the resources the gate released into a
`ModelResult`: its outputs with the contribution or rule behind each part, or an
explicit insufficient-data result naming what is missing. None guesses a
missing input. See each module's docstring for its source and its codes.
"""

from __future__ import annotations

from diagnostics.inference.base import (
    INSUFFICIENT_DATA,
    SUCCEEDED,
    Contribution,
    InputSpec,
    Model,
    ModelResult,
    ModelSpec,
)
from diagnostics.inference.registry import get_model, list_models
from diagnostics.inference.select import inputs_from_resources, newest_input_day

__all__ = [
    "INSUFFICIENT_DATA",
    "SUCCEEDED",
    "Contribution",
    "InputSpec",
    "Model",
    "ModelResult",
    "ModelSpec",
    "get_model",
    "inputs_from_resources",
    "list_models",
    "newest_input_day",
]
