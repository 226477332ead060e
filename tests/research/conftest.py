"""Fixtures of the research tests: the in-process chain, an approved recruiting study, generated participants.

Participants' records are small generated FHIR bundles (a Patient, optionally a Condition and a total
cholesterol result), so cohorts of 20 and more stay fast. Celery runs eagerly: on-commit callbacks are
executed by `django_capture_on_commit_callbacks`, so a run's fan-out happens as it would in a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import orjson
import pytest

from accounts.services import user_create
from consent.models import Grant
from ledger.outbox import outbox_relay
from records.models import Patient
from records.services import fhir_ingest, patient_create
from research.models import Participation, Study
from research.services import study_create, study_transition
from tests.api.conftest import token_for  # noqa: F401
from tests.consent.conftest import deployed  # noqa: F401
from tests.ledger.conftest import chain  # noqa: F401
from tests.patient_device import participation_join_signed

LOINC_CHOL = "http://loinc.org|2093-3"
DIABETES = "http://snomed.info/sct|44054006"


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "Cholesterol and diabetes in primary care",
        "summary": "How common diabetes is by age and sex, and how cholesterol is distributed.",
        "institution": "University of Examples",
        "funder": "Example Health Research Council",
        "commercial": False,
        "ethics_ref": "REC 26/EX/0001",
        "duo": ["HMB", "NCU", "IRB"],
        "ends": (date.today() + timedelta(days=365)).isoformat(),
        "analyses": [
            {"id": "count-by-strata", "params": {"strata": ["sex", "condition"], "condition": DIABETES}},
            {
                "id": "observation-summary",
                "params": {"code": LOINC_CHOL, "unit": "mg/dL", "lo": 0, "hi": 600, "bin": 1},
            },
        ],
        "min_cohort": 20,
    }
    base.update(overrides)
    return base


PATIENT_URN = "urn:uuid:00000000-0000-4000-8000-000000000001"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _entry(number: int, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{number}",
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def bundle(*, sex: str, birth: str, diabetic: bool, cholesterol: float | None) -> dict[str, Any]:
    entries = [_entry(1, {"resourceType": "Patient", "gender": sex, "birthDate": birth})]
    if diabetic:
        condition = {
            "resourceType": "Condition",
            "subject": {"reference": PATIENT_URN},
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        }
        entries.append(_entry(2, condition))
    if cholesterol is not None:
        quantity = {"value": cholesterol, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "subject": {"reference": PATIENT_URN},
            "effectiveDateTime": "2025-06-01T10:00:00Z",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]},
            "valueQuantity": quantity,
        }
        entries.append(_entry(3, observation))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture
def make_patient(db) -> Callable[..., Patient]:  # type: ignore[no-untyped-def]
    counter = iter(range(10_000))

    def make(*, sex: str = "female", birth: str = "1970-01-01", diabetic: bool = False,
             cholesterol: float | None = 200.0) -> Patient:  # fmt: skip
        user = user_create(username=f"participant-{next(counter):05d}-x", password=None, role="patient")
        patient = patient_create(user=user)
        payload = orjson.dumps(bundle(sex=sex, birth=birth, diabetic=diabetic, cholesterol=cholesterol))
        fhir_ingest(payload=payload, actor="system:test", patient=patient)
        patient.refresh_from_db()
        return patient

    return make


@pytest.fixture
def recruiting_study(deployed, researcher, steward) -> Callable[..., Study]:  # type: ignore[no-untyped-def]  # noqa: F811
    def make(**overrides: Any) -> Study:
        study = study_create(by=researcher, spec=spec(**overrides))
        study = study_transition(study=study, to="submitted", by=researcher)
        study = study_transition(study=study, to="in-review", by=steward)
        study = study_transition(study=study, to="approved", by=steward)
        return study_transition(study=study, to="recruiting", by=researcher)

    return make


def relay_all() -> None:
    for _ in range(10):
        outbox_relay(limit=500)
        if not Grant.objects.filter(status="pending").exists():
            return
    raise AssertionError("grants still pending after relaying")


@pytest.fixture
def join() -> Callable[..., list[Participation]]:
    def run(study: Study, patients: list[Patient]) -> list[Participation]:
        joined = [participation_join_signed(study=study, by=p.user) for p in patients]
        relay_all()
        return joined

    return run


@pytest.fixture(autouse=True)
def eager_celery(settings):  # type: ignore[no-untyped-def]
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from healthledger.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False
