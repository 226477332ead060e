"""The release: RiskAssessment, Provenance, derived Observation and JobResult, one transaction with the end state."""

from __future__ import annotations

from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from audit.models import Outcome
from consent.models import Grant
from diagnostics import fhir
from diagnostics.claim import job_and_grant_lock
from diagnostics.models import DiagnosticJob, JobResult, JobStatus
from diagnostics.services.base import _Inputs, _log
from diagnostics.services.consent_checks import _chain_reason, _consent_reason
from diagnostics.services.delivery import _terminal
from records.ingest import import_id
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
        # the job terminal, so a result is never released twice. Its requester comes in the same
        # statement, unlocked and as it is now; and its grant's row, locked as grant_revoke locks it: a
        # revocation either commits before this check (and the job is denied) or waits until the result
        # is released (a release before the revocation).
        if job.grant_id:
            locked, grant = job_and_grant_lock(job_id=job.pk)
        else:
            locked = DiagnosticJob.objects.select_for_update(of=("self",)).select_related("requester").get(pk=job.pk)
        if locked.is_terminal:
            return str(locked.status)
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


def _planned_ref(patient: Patient, resource: dict[str, Any]) -> str:
    # The id the store will give this new resource, version 1: the Provenance names its target by both.
    return f"{resource['resourceType']}/{import_id(owner=patient, resource=resource)}/_history/1"


def _outputs_store(job: DiagnosticJob, patient: Patient, outputs: list[dict[str, Any]], planned: list[str]) -> None:
    """Store a job's outputs in one ingest (one collection Bundle): one validation each, one records.write entry.

    The outputs were named before they were stored (`planned`); a store that named them otherwise (a
    resource of this job already stored) rolls the release back.
    """
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in outputs]}
    written = fhir_ingest(payload=orjson.dumps(bundle), actor=f"job:{job.id}", patient=patient)
    stored = [ref for writes in written.patients.values() for ref in writes.created + writes.updated]
    if sorted(stored) != sorted(planned):
        raise RuntimeError("the store named the job's outputs otherwise than planned")


def _result_store(job: DiagnosticJob, spec: Any, patient: Patient, inputs: _Inputs, result: Any) -> JobResult:
    now = timezone.now()
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
    risk_ref = _planned_ref(patient, risk)
    stored_risk = {**risk, "id": risk_ref.split("/")[1]}
    output_hash = fhir.output_hash(stored_risk)
    commitment = fhir.input_commitment(inputs.bodies)
    observation = _observation(job, spec, patient, inputs, result)
    observation_ref = _planned_ref(patient, observation) if observation else ""
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
    prov_ref = _planned_ref(patient, prov)
    outputs = [risk, *([observation] if observation else []), prov]
    _outputs_store(job, patient, outputs, [risk_ref, *([observation_ref] if observation_ref else []), prov_ref])
    return JobResult.objects.create(
        job=job,
        risk_assessment_ref=risk_ref,
        provenance_ref=prov_ref,
        input_commitment=commitment,
        output_hash=output_hash,
        input_refs=inputs.references,
        released_at=now,
    )


def _observation(
    job: DiagnosticJob, spec: Any, patient: Patient, inputs: _Inputs, result: Any
) -> dict[str, Any] | None:
    """The output a model declares as an Observation (eGFR, LOINC 98979-8); None when it declares none."""
    declared = getattr(spec, "observation", None)
    value = result.outputs.get(declared[0]) if declared else None
    if value is None:
        return None
    used = tuple(result.sources)
    derived = [ref for ref in inputs.references if "/".join(ref.split("/")[:2]) in used]
    return fhir.derived_observation(
        resource_id=str(job.id),
        job_id=str(job.id),
        spec=spec,
        patient_fhir_id=patient.fhir_id,
        as_of=job.as_of,
        value=value,
        derived_from=derived,
    )
