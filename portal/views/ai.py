"""AI on my own record: run a diagnostic model, follow its job, read its result with its explanation.

The job runs in a Celery worker (diagnostics.services); the result is a RiskAssessment
stored in the patient's record, read back here through the gate like any other resource.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from diagnostics.inference import list_models
from diagnostics.selectors import jobs_for_patient
from diagnostics.services import diagnostic_job_request
from portal import selectors
from portal.views.common import own_caller, patient_page
from records.models import Patient


def _context(request: HttpRequest, patient: Patient) -> dict[str, object]:
    jobs = selectors.ai_jobs(caller=own_caller(request), patient=patient, jobs=list(jobs_for_patient(patient=patient)))
    return {
        "patient": patient,
        "nav": "ai",
        "models": [selectors.model_card(spec) for spec in list_models()],
        "jobs": jobs,
        "active": any(job.active for job in jobs),
    }


@require_GET
@patient_page
def ai(request: HttpRequest, patient: Patient) -> HttpResponse:
    template = "portal/_ai_jobs.html" if request.headers.get("HX-Request") else "portal/ai.html"
    return render(request, template, _context(request, patient))


@require_POST
@patient_page
def ai_run(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Queue a model on the patient's own record (purpose PATRQT); the page then follows the job."""
    job = diagnostic_job_request(requester=request.user, patient=patient, model_id=request.POST.get("model_id", ""))  # type: ignore[arg-type]
    return redirect(f"/ai/#job-{job.pk}")
