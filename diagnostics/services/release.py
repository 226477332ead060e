"""The release: RiskAssessment, Provenance, derived Observation and JobResult, one transaction with the end state."""

from __future__ import annotations

from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from audit.models import Outcome
from consent.models import Grant
from diagnostics import fhir
from diagnostics.models import DiagnosticJob, JobResult, JobStatus
from diagnostics.services.base import _Inputs, _log
from diagnostics.services.consent_checks import _chain_reason, _consent_reason
from diagnostics.services.delivery import _terminal
from records.logtext import log_text_seal
from records.models import Patient
from records.services import fhir_ingest


def _release(
    job: DiagnosticJob, spec: Any, patient: Patient, inputs: _Inputs, result: Any, *, grant: Grant | None
) -> str:
    """Store the result and end the job, in one transaction, unless consent ended or the job already ended.

    `grant` is the job's grant as read at the start: what the chain is asked about (id, grantee, scope) never
    changes; its status is read again under its row lock below.
    """
    # The chain is asked before the transaction so no row lock waits on the network; the database
    # check inside, under the grant's lock, is the one a revocation cannot slip past.
    chain_reason = _chain_reason(job, grant)
    with transaction.atomic():
        # Locks the job row: of two deliveries that both got here, the second waits and then finds
        # the job terminal, so a result is never released twice.
        # Its requester comes in the same statement, unlocked and as it is now.
        locked = DiagnosticJob.objects.select_for_update(of=("self",)).select_related("requester").get(pk=job.pk)
        if locked.is_terminal:
            return str(locked.status)
        if job.grant_id:
            # Locks the grant row, as grant_revoke does: a revocation either commits before this check
            # (and the job is denied) or waits until the result is released (a release before the revocation).
            grant = Grant.objects.select_for_update().get(pk=job.grant_id)
        reason = _consent_reason(locked, spec, grant=grant, requester=locked.requester, patient=patient) or chain_reason
        if reason:
            _terminal(locked, JobStatus.DENIED, reason)
            _log(locked, actor=f"job:{locked.id}", action="diagnostics.job.run", outcome=Outcome.DENY, reason=reason)
            return JobStatus.DENIED
        if result.status == "succeeded":
            released = _result_store(locked, spec, patient, inputs, result)
            _terminal(locked, JobStatus.SUCCEEDED)
            _log(
                locked,
                actor=f"job:{locked.id}",
                action="diagnostics.result.release",
                outcome=Outcome.PERMIT,
                resource_ids=(released.risk_assessment_ref, released.provenance_ref),
            )
            return JobStatus.SUCCEEDED
        _reasons_keep(locked, result)  # saved with the terminal state, in one statement
        _terminal(
            locked, JobStatus.INSUFFICIENT_DATA, "; ".join(locked.reason_lines), also=("reasons", "reason_detail")
        )
        # What the requester learns is which inputs the record lacks: a release too, so it is logged.
        _log(
            locked,
            actor=f"job:{locked.id}",
            action="diagnostics.result.release",
            outcome=Outcome.PERMIT,
            query="insufficient-data",
        )
        return JobStatus.INSUFFICIENT_DATA


def _reasons_keep(job: DiagnosticJob, result: Any) -> None:
    """Keep why the model did not run: structured and value-free in clear, its own words sealed for the patient."""
    # A model that names only what is missing (no reasons of its own) still gets one reason per name.
    job.reasons = list(result.reasons) or [{"input": name, "kind": "missing"} for name in result.missing]
    detail = "\n".join(f"{c.name.replace('_', ' ')}: {c.rule}" for c in result.contributions)
    job.reason_detail = log_text_seal(patient_id=job.patient_id, text=detail)


def _created(result: Any, resource_type: str) -> str:
    refs = [ref for writes in result.patients.values() for ref in writes.created + writes.updated]
    return next(ref for ref in refs if ref.startswith(resource_type + "/"))


def _result_store(job: DiagnosticJob, spec: Any, patient: Patient, inputs: _Inputs, result: Any) -> JobResult:
    now = timezone.now()
    actor = f"job:{job.id}"
    risk = fhir.risk_assessment(
        # The id sent is the job's: the store derives the server id from it, so the same job always
        # names the same RiskAssessment (a repeat could only version it, and the JobResult key refuses that).
        resource_id=str(job.id),
        job_id=str(job.id),
        spec=spec,
        patient_fhir_id=patient.fhir_id,
        as_of=job.as_of,
        outputs=result.outputs,
        contributions=result.contributions,
        summary=result.summary,
        basis=inputs.references,
    )
    risk_ref = _created(fhir_ingest(payload=orjson.dumps(risk), actor=actor, patient=patient), "RiskAssessment")
    risk_id = risk_ref.split("/")[1]
    stored_risk = {**risk, "id": risk_id}
    output_hash = fhir.output_hash(stored_risk)
    commitment = fhir.input_commitment(inputs.bodies)
    observation_ref = _observation_store(job, spec, patient, inputs, result)
    prov = fhir.provenance(
        job_id=str(job.id),
        spec=spec,
        target=risk_ref,
        sources=inputs.references,
        recorded=now,
        purpose=job.purpose,
        requester_ref=f"user:{job.requester_id}",
        input_commitment_hex=commitment,
        output_hash_hex=output_hash,
        as_of=job.as_of,
        grant_id=str(job.grant_id or ""),
        also_targets=(observation_ref,) if observation_ref else (),
    )
    prov["id"] = str(job.id)
    prov_ref = _created(fhir_ingest(payload=orjson.dumps(prov), actor=actor, patient=patient), "Provenance")
    return JobResult.objects.create(
        job=job,
        risk_assessment_ref=risk_ref,
        provenance_ref=prov_ref,
        input_commitment=commitment,
        output_hash=output_hash,
        input_refs=inputs.references,
        released_at=now,
    )


def _observation_store(job: DiagnosticJob, spec: Any, patient: Patient, inputs: _Inputs, result: Any) -> str:
    """Release the output a model declares as an Observation (eGFR, LOINC 98979-8); "" when it declares none."""
    declared = getattr(spec, "observation", None)
    value = result.outputs.get(declared[0]) if declared else None
    if value is None:
        return ""
    used = tuple(result.sources)
    derived = [ref for ref in inputs.references if "/".join(ref.split("/")[:2]) in used]
    observation = fhir.derived_observation(
        resource_id=str(job.id),
        job_id=str(job.id),
        spec=spec,
        patient_fhir_id=patient.fhir_id,
        as_of=job.as_of,
        value=value,
        derived_from=derived,
    )
    return _created(
        fhir_ingest(payload=orjson.dumps(observation), actor=f"job:{job.id}", patient=patient), "Observation"
    )
