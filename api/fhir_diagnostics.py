"""FHIR endpoints of diagnostics: `POST /fhir/Patient/{id}/$diagnose?model=<id>` and `GET /fhir/Task/{id}`.

$diagnose takes its inputs in the query or as a `Parameters` body (api.fhir.operations.DIAGNOSE,
which is also its OperationDefinition).

$diagnose answers 202 Accepted with the job as a Task and its Content-Location once the job is
committed with its dispatch row. It waits on the broker for one bounded publish at most
(JOB_PUBLISH_TIMEOUT_SECONDS, then diagnostics.dispatch publishes it when the broker is back), and
answers 503 with Retry-After only when the database could not accept the job. A request with an
`Idempotency-Key` header that repeats an earlier one by the same client answers with that earlier
job instead of making a second; the same key for another request is 422. The client
follows the Task until it is completed (output: the RiskAssessment and its Provenance),
rejected (consent ended) or failed. A Task is visible to its requester and to the patient
whose record it runs on; anyone else gets what a stranger gets for a task that does not exist.
"""

from __future__ import annotations

from datetime import date

import orjson
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone

from api.access import fhir_endpoint, gate_caller, scope_require
from api.auth import TokenContext
from api.fhir import operations
from api.outcomes import FHIR_CONTENT_TYPE, BadRequest
from diagnostics import selectors, services
from diagnostics.fhir import job_as_task
from diagnostics.models import DiagnosticJob
from healthledger.errors import ResourceNotFound
from records.models import Patient


def _task_response(job: DiagnosticJob, *, status: int = 200) -> HttpResponse:
    title = ""
    try:
        title = services.model_get(job.model_id).spec.title
    except services.UnknownModel:
        title = job.model_id  # a model retired since: the Task still shows what ran
    task = job_as_task(
        job=job,
        patient_fhir_id=job.patient.fhir_id,
        model_title=title,
        result_refs=selectors.job_result_refs(job),
        reason_detail=selectors.job_reason_detail(job),
    )
    response = HttpResponse(orjson.dumps(task), status=status, content_type=FHIR_CONTENT_TYPE)
    response["Content-Location"] = f"/fhir/Task/{job.id}"
    response["ETag"] = f'W/"{int(job.updated_at.timestamp() * 1000)}"'
    return response


def _as_of(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise BadRequest("as-of must be a date (YYYY-MM-DD)") from None
    # Checked here too, before the model or the patient is looked up, so every caller hears the same.
    services.as_of_check(parsed, today=timezone.now().date())
    return parsed


@fhir_endpoint("POST")
def patient_diagnose(request: HttpRequest, context: TokenContext, patient_id: str) -> HttpResponse:
    """Queue a model run on a patient's record; 202 with the Task to follow."""
    inputs = operations.operation_inputs(request, operations.DIAGNOSE)  # the query, or a Parameters body
    model_id = inputs.get("model", "").strip()
    if not model_id:
        raise BadRequest("the model parameter is required: $diagnose?model=<model id>")
    scope_require(context, "Task", "c")
    caller = gate_caller(request, context)
    as_of = _as_of(inputs.get("as-of"))
    services.model_get(model_id)  # an unknown model is a 400 whether or not the patient exists
    patient = Patient.objects.filter(fhir_id=patient_id, erased_at__isnull=True).first()
    if patient is None or (caller.patient_context is not None and patient.pk != caller.patient_context):
        # A SMART token with a patient in context runs models on that patient only.
        raise ResourceNotFound("resource not found")
    # Idempotency-Key: a client that lost the answer retries with the same key and gets the same job.
    job = services.diagnostic_job_request(
        requester=context.user,
        patient=patient,
        model_id=model_id,
        purpose=caller.purpose,
        as_of=as_of,
        idempotency_key=request.headers.get("Idempotency-Key", ""),
    )
    response = _task_response(DiagnosticJob.objects.select_related("patient").get(pk=job.pk), status=202)
    response["Location"] = f"/fhir/Task/{job.id}"
    return response


@fhir_endpoint("GET")
def task_read(request: HttpRequest, context: TokenContext, task_id: str) -> HttpResponse:
    """The job as a Task, for its requester and the record's patient only."""
    scope_require(context, "Task", "r")
    job = selectors.job_for_viewer(job_id=task_id, user=context.user)
    if job is None or (context.patient_context is not None and job.patient_id != context.patient_context):
        raise ResourceNotFound("resource not found")
    return _task_response(job)


urlpatterns = [
    path("Patient/<str:patient_id>/$diagnose", patient_diagnose, name="fhir-patient-diagnose"),
    path("Task/<str:task_id>", task_read, name="fhir-task-read"),
]
