"""AI on my own record: run a model, follow the job, read the result with what each number means."""

from __future__ import annotations

import orjson
import pytest
from django.utils import timezone

from diagnostics.models import DiagnosticJob
from diagnostics.services import diagnostic_job_execute
from records.models import Patient
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db


def test_the_page_lists_each_model_with_its_intended_use(alice) -> None:
    from diagnostics.inference import list_models

    page = alice.get("/ai/").content.decode()

    for spec in list_models():
        assert spec.title in page
        assert f'name="model_id" value="{spec.id}"' in page
    assert "Intended use:" in page


def _fresh_creatinine(patient) -> None:  # type: ignore[no-untyped-def]
    """A creatinine result from today: the model reads the last year only, and the demo record is older."""
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine"}]},
        "subject": {"reference": f"Patient/{patient.fhir_id}"},
        "effectiveDateTime": timezone.now().isoformat(timespec="seconds"),
        "valueQuantity": {"value": 1.1, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    }
    fhir_ingest(payload=orjson.dumps(observation), actor="system:test", patient=patient)


def test_running_the_egfr_model_queues_a_job_and_shows_its_explained_result(alice, alice_record) -> None:
    _fresh_creatinine(Patient.objects.get(pk=alice_record.pk))
    response = alice.post("/ai/run/", {"model_id": "egfr-ckd-epi-2021"})
    job = DiagnosticJob.objects.get()
    assert (response.status_code, response["Location"]) == (302, f"/ai/#job-{job.pk}")
    assert (job.requester_id, job.purpose, job.status) == (alice_record.user_id, "PATRQT", "queued")
    queued = alice.get("/ai/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in queued

    diagnostic_job_execute(job_id=str(job.pk))  # what the worker does
    page = alice.get("/ai/").content.decode()

    assert DiagnosticJob.objects.get().status == "succeeded"
    assert "The numbers" in page
    assert "How each input counted" in page
    assert "Intended use:" in page
    assert 'hx-trigger="every 2s"' not in page


def test_a_record_without_the_inputs_says_in_plain_words_what_is_missing(alice, alice_record) -> None:
    # The demo record has vital signs but no ACVPU consciousness assessment: NEWS2 cannot be scored.
    alice.post("/ai/run/", {"model_id": "news2"})

    diagnostic_job_execute(job_id=str(DiagnosticJob.objects.get().pk))

    page = alice.get("/ai/").content.decode()
    assert "Not enough data" in page
    assert "<li>consciousness (ACVPU): not recorded in the day up to the as-of date</li>" in page
    assert "In detail" in page  # the model's own words, opened for her


def test_an_unknown_model_is_a_friendly_400(alice, patient) -> None:
    response = alice.post("/ai/run/", {"model_id": "crystal-ball"})

    assert response.status_code == 400
    assert "unknown model" in response.content.decode()
    assert not DiagnosticJob.objects.exists()


def test_bob_does_not_see_alices_jobs(alice, alice_record, bob) -> None:
    alice.post("/ai/run/", {"model_id": "egfr-ckd-epi-2021"})

    assert "You have not run any model yet." in bob.get("/ai/").content.decode()
