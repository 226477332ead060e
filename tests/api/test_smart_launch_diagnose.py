"""A token with a patient in context runs models, and reads their Tasks, on that patient only."""

from __future__ import annotations

import secrets
from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken

from api.smart_models import TokenLaunch
from tests.diagnostics.jobs_support import *  # noqa: F403
from tests.diagnostics.jobs_support import SPEC

pytestmark = pytest.mark.django_db


def _client(user, launch_patient=None) -> Client:  # type: ignore[no-untyped-def]
    token = secrets.token_urlsafe(32)
    access = AccessToken.objects.create(
        user=user, token=token, expires=timezone.now() + timedelta(hours=1), scope="user/*.cruds patient/*.cruds"
    )
    if launch_patient is not None:
        TokenLaunch.objects.create(access_token=access, patient=launch_patient)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_token_pinned_to_another_patient_neither_runs_a_model_nor_reads_the_task(
    seam_model, run_model_grant, alice_record, other_patient, clinician
):
    run_model_grant()
    alice_record.refresh_from_db()
    url = f"/fhir/Patient/{alice_record.fhir_id}/$diagnose?model={SPEC.id}"

    pinned_elsewhere = _client(clinician, launch_patient=other_patient)
    assert pinned_elsewhere.post(url).status_code == 404

    answer = _client(clinician, launch_patient=alice_record).post(url)
    assert answer.status_code == 202
    task_id = orjson.loads(answer.content)["id"]
    assert _client(clinician, launch_patient=alice_record).get(f"/fhir/Task/{task_id}").status_code == 200
    assert pinned_elsewhere.get(f"/fhir/Task/{task_id}").status_code == 404
