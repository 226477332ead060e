"""The REQUIRED code bindings R4B lets through, and the lists kept beside the R4B models."""

from __future__ import annotations

import copy
import typing
from typing import Any

import pytest
from fhir.resources.R4B import fhirtypes, get_fhir_model_class

from records.fhir import parse_document
from records.fhir.resource_types import RESOURCE_TYPES
from records.fhir.valuesets import BINDINGS, COMMON_BINDINGS, Binding
from tests.records.test_fhir_samples import dumps, problems

SUBJECT = {"reference": "Patient/p1"}
CONCEPT = {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"

# A minimal valid resource of each common clinical type, and the coded element to break in it.
CASES: list[tuple[dict[str, Any], str]] = [
    ({"resourceType": "Observation", "status": "final", "code": CONCEPT}, "status"),
    ({"resourceType": "DiagnosticReport", "status": "final", "code": CONCEPT}, "status"),
    ({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}, "status"),
    (
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "statusHistory": [{"status": "arrived", "period": {"start": "2020-01-01"}}],
        },
        "statusHistory[0].status",
    ),
    ({"resourceType": "Procedure", "status": "completed", "subject": SUBJECT}, "status"),
    (
        {
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": CONCEPT,
            "patient": SUBJECT,
            "occurrenceDateTime": "2020-01-01",
        },
        "status",
    ),
    (
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": CONCEPT,
            "subject": SUBJECT,
        },
        "status",
    ),
    (
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": CONCEPT,
            "subject": SUBJECT,
        },
        "intent",
    ),
    ({"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": SUBJECT}, "status"),
    (
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": SUBJECT,
            "activity": [{"detail": {"status": "completed"}}],
        },
        "activity[0].detail.status",
    ),
    (
        {"resourceType": "Goal", "lifecycleStatus": "active", "description": CONCEPT, "subject": SUBJECT},
        "lifecycleStatus",
    ),
    (
        {
            "resourceType": "Claim",
            "status": "active",
            "type": CONCEPT,
            "use": "claim",
            "patient": SUBJECT,
            "created": "2020-01-01",
            "provider": SUBJECT,
            "priority": CONCEPT,
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/c1"}}],
        },
        "status",
    ),
    (
        {
            "resourceType": "ExplanationOfBenefit",
            "status": "active",
            "type": CONCEPT,
            "use": "claim",
            "patient": SUBJECT,
            "created": "2020-01-01",
            "insurer": {"display": "x"},
            "provider": SUBJECT,
            "outcome": "complete",
            "insurance": [{"focal": True, "coverage": {"reference": "Coverage/c1"}}],
        },
        "status",
    ),
    ({"resourceType": "ImagingStudy", "status": "available", "subject": SUBJECT}, "status"),
    ({"resourceType": "Consent", "status": "active", "scope": CONCEPT, "category": [CONCEPT]}, "status"),
    ({"resourceType": "RiskAssessment", "status": "final", "subject": SUBJECT}, "status"),
    ({"resourceType": "Task", "status": "ready", "intent": "order"}, "status"),
    (
        {
            "resourceType": "Provenance",
            "target": [SUBJECT],
            "recorded": "2020-01-01T00:00:00Z",
            "agent": [{"who": SUBJECT}],
            "entity": [{"role": "source", "what": SUBJECT}],
        },
        "entity[0].role",
    ),
    (
        {
            "resourceType": "AuditEvent",
            "type": {"code": "rest"},
            "action": "R",
            "recorded": "2020-01-01T00:00:00Z",
            "agent": [{"requestor": True}],
            "source": {"observer": SUBJECT},
        },
        "action",
    ),
    ({"resourceType": "Patient", "gender": "female"}, "gender"),
    ({"resourceType": "Practitioner", "gender": "male"}, "gender"),
    (
        {
            "resourceType": "Patient",
            "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        },
        "text.status",
    ),
]


def _set(resource: dict[str, Any], path: str, value: Any) -> None:
    node: Any = resource
    steps = path.replace("[", ".").replace("]", "").split(".")
    for step in steps[:-1]:
        node = node[int(step)] if step.isdigit() else node[step]
    node[steps[-1]] = value


@pytest.mark.parametrize(("resource", "element"), CASES, ids=[f"{r['resourceType']}.{e}" for r, e in CASES])
def test_a_code_outside_its_required_value_set_is_refused(resource: dict[str, Any], element: str) -> None:
    assert parse_document(dumps(resource)).entries[0].resource == resource  # the valid form passes

    broken = copy.deepcopy(resource)
    _set(broken, element, "nonsense")

    assert problems(broken) == [("value", (f"{resource['resourceType']}.{element}",))]


def test_a_condition_status_must_come_from_its_code_system() -> None:
    condition = {
        "resourceType": "Condition",
        "subject": SUBJECT,
        "clinicalStatus": {"coding": [{"system": TERMINOLOGY + "condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": TERMINOLOGY + "condition-ver-status", "code": "confirmed"}]},
    }
    assert parse_document(dumps(condition)).entries[0].resource == condition

    wrong_code = copy.deepcopy(condition)
    wrong_code["clinicalStatus"]["coding"][0]["code"] = "confirmed"
    wrong_system = copy.deepcopy(condition)
    wrong_system["verificationStatus"] = {"coding": [{"system": "http://snomed.info/sct", "code": "confirmed"}]}
    text_only = copy.deepcopy(condition)
    text_only["clinicalStatus"] = {"text": "active"}

    assert problems(wrong_code) == [("value", ("Condition.clinicalStatus.coding[0].code",))]
    assert problems(wrong_system) == [("value", ("Condition.verificationStatus",))]
    assert problems(text_only) == [("value", ("Condition.clinicalStatus",))]


def test_an_allergy_status_and_category_are_checked() -> None:
    allergy = {
        "resourceType": "AllergyIntolerance",
        "patient": SUBJECT,
        "clinicalStatus": {"coding": [{"system": TERMINOLOGY + "allergyintolerance-clinical", "code": "remission"}]},
        "category": ["food", "pollen"],
    }

    assert problems(allergy) == [
        ("value", ("AllergyIntolerance.clinicalStatus.coding[0].code",)),
        ("value", ("AllergyIntolerance.category[1]",)),
    ]


def test_the_resource_type_list_matches_the_installed_r4b_models() -> None:
    found = set()
    for name in dir(fhirtypes):
        model = getattr(fhirtypes, name)
        dotted = getattr(model, "_model_klass", None)
        if not name.endswith("Type") or not isinstance(dotted, str):
            continue
        module, cls = dotted.rsplit(".", 2)[-2:]
        if module == cls.lower() and model.get_model_klass().has_resource_base():
            found.add(cls)

    assert found - {"Resource", "DomainResource"} == RESOURCE_TYPES


def _field(model: Any, name: str) -> Any:
    return next(f for f in model.model_fields.values() if f.alias == name)


def _element(binding: Binding, resource_type: str) -> Any:
    """The R4B field a binding names, walking backbone elements."""
    model = get_fhir_model_class(resource_type)
    field = None
    for i, (name, _) in enumerate(binding.steps):
        field = _field(model, name)
        if i < len(binding.steps) - 1:
            inner = next(a for a in typing.get_args(field.annotation) if a is not type(None))
            while typing.get_args(inner):  # List[XType]
                inner = typing.get_args(inner)[0]
            model = inner.get_model_klass()
    return field


def test_every_value_set_agrees_with_what_the_r4b_models_list_for_the_element() -> None:
    compared = []
    for resource_type, bindings in [*BINDINGS.items(), ("Patient", COMMON_BINDINGS)]:
        for binding in bindings:
            field = _element(binding, resource_type)
            extra = field.json_schema_extra or {}
            # The models copy the element's short description: the codes, cut off with "+" when there are many.
            listed = extra.get("enum_values") or [c.strip() for c in (field.title or "").split("|")]
            if len(listed) < 2:
                continue  # a prose title (AuditEvent.action): nothing to compare with
            codes = {c for c in listed if c != "+"}
            assert codes <= binding.value_set.codes, (resource_type, binding.path)
            if "+" not in listed:
                assert codes == binding.value_set.codes, (resource_type, binding.path)
            compared.append(f"{resource_type}.{binding.path}")
    assert len(compared) == sum(len(b) for b in BINDINGS.values()) + len(COMMON_BINDINGS) - 2  # AuditEvent's two
