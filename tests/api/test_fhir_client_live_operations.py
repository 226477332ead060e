"""fhirpy, unmodified, against a live server: count() and $diagnose with a Parameters body, then the job's outputs."""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from diagnostics.models import DiagnosticJob
from diagnostics.services import diagnostic_job_execute
from records.models import Resource
from tests.diagnostics.jobs_support import *  # noqa: F403
from tests.diagnostics.jobs_support import SPEC

pytestmark = pytest.mark.django_db(transaction=True)


def _client(live_server, token: str) -> SyncFHIRClient:  # type: ignore[no-untyped-def]
    return SyncFHIRClient(f"{live_server.url}/fhir", authorization=f"Bearer {token}")


def test_fhirpy_counts_with_its_own_total_method_parameter(live_server, patient_user, token_for, alice_record):
    client = _client(live_server, token_for(patient_user))
    expected = Resource.objects.filter(patient=alice_record, resource_type="Observation").count()
    assert client.resources("Observation").count() == expected


def test_fhirpy_runs_diagnose_with_parameters_and_reads_the_outputs_only_its_clinician_may(
    live_server, seam_model, run_model_grant, alice_record, clinician, other_clinician, token_for
):
    run_model_grant()
    run_model_grant(grantee=other_clinician)
    alice_record.refresh_from_db()
    carol = _client(live_server, token_for(clinician))
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "model", "valueString": SPEC.id}]}

    task = carol.reference("Patient", alice_record.fhir_id).execute("$diagnose", method="post", data=parameters)

    assert (task["resourceType"], task["status"]) == ("Task", "requested")
    diagnostic_job_execute(job_id=str(DiagnosticJob.objects.get().pk))
    done = carol.reference("Task", task["id"]).to_resource()
    outputs = [o["valueReference"]["reference"] for o in done["output"]]
    risk = carol.reference(*outputs[0].split("/")).to_resource()
    assert risk["resourceType"] == "RiskAssessment"
    assert carol.reference(*outputs[1].split("/")).to_resource()["resourceType"] == "Provenance"
    dave = _client(live_server, token_for(other_clinician))
    with pytest.raises(ResourceNotFound):
        dave.reference(*outputs[0].split("/")).to_resource()
