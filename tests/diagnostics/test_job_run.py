"""A diagnostic job from request to release: consent, gated reads logged with the job id, result and provenance."""

from __future__ import annotations

import datetime

import orjson
import pytest
from django.db import IntegrityError, transaction

from audit.models import AccessLogEntry
from consent.gate import Caller, resource_read
from diagnostics import fhir
from diagnostics.models import DiagnosticJob, JobResult
from diagnostics.services import (
    InvalidJobRequest,
    UnknownModel,
    diagnostic_job_execute,
    diagnostic_job_request,
)
from diagnostics.tasks import diagnostic_job_run, diagnostic_jobs_run_batch
from healthledger.errors import ResourceNotFound
from records.models import Resource
from tests.diagnostics.jobs_support import *  # noqa: F403
from tests.diagnostics.jobs_support import CREATININE_CODES, SPEC

pytestmark = pytest.mark.django_db


def _job_reads(job: DiagnosticJob) -> list[AccessLogEntry]:
    return list(
        AccessLogEntry.objects.filter(job_id=str(job.id), action__in=["records.read", "records.search"]).order_by("id")
    )


def _read_as_alice(patient_user, record, reference: str) -> dict:  # type: ignore[no-untyped-def]
    resource_type, resource_id = reference.split("/")[:2]
    body = resource_read(
        caller=Caller(actor=patient_user), patient=record, resource_type=resource_type, resource_id=resource_id
    )
    return orjson.loads(body)


def test_a_granted_clinicians_job_releases_a_risk_assessment_and_its_provenance(
    seam_model, run_model_grant, alice_record, clinician, patient_user
):
    grant = run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)
    assert (job.status, job.grant_id, job.purpose, job.model_version_hash) == (
        "queued", grant.id, "TREAT", SPEC.version_hash,
    )  # fmt: skip

    outcome = diagnostic_job_execute(job_id=str(job.id))

    job.refresh_from_db()
    assert (outcome.status, job.status, job.progress, job.deliveries) == ("succeeded", "succeeded", 100, 1)
    result = JobResult.objects.get(job=job)
    risk = _read_as_alice(patient_user, alice_record, result.risk_assessment_ref)
    alice_record.refresh_from_db()
    assert risk["status"] == "final"
    assert risk["subject"] == {"reference": f"Patient/{alice_record.fhir_id}"}
    assert risk["method"]["coding"][0]["code"] == SPEC.id
    assert [b["reference"] for b in risk["basis"]] == result.input_refs
    assert "not a diagnosis" in risk["note"][0]["text"]
    assert risk["prediction"][0]["qualitativeRisk"]["text"] in ("high", "normal")
    # The output hash is over the stored RiskAssessment without its meta: anyone holding it can check.
    assert fhir.output_hash(risk) == result.output_hash

    prov = _read_as_alice(patient_user, alice_record, result.provenance_ref)
    assert prov["target"] == [{"reference": result.risk_assessment_ref}]
    assert [e["what"]["reference"] for e in prov["entity"]] == result.input_refs
    extensions = {e["url"].rsplit("/", 1)[1]: e.get("valueString", e.get("valueDate")) for e in prov["extension"]}
    assert prov["policy"] == [f"urn:healthledger:grant:{grant.id}"]
    assert extensions == {
        "as-of": job.as_of.isoformat(),
        "grant": grant.id,
        "diagnostic-job": str(job.id),
        "model-id": SPEC.id,
        "model-version": SPEC.version,
        "model-version-hash": SPEC.version_hash,
        "input-commitment": "sha256:" + result.input_commitment,
        "output-hash": "sha256:" + result.output_hash,
    }
    # The input commitment is recomputable from the stored versions the job read.
    bodies = []
    for reference in result.input_refs:
        resource_type, resource_id, _, version = reference.split("/")
        bodies.append(
            resource_read(
                caller=Caller(actor=patient_user), patient=alice_record, resource_type=resource_type,
                resource_id=resource_id, version=int(version),
            )
        )  # fmt: skip
    assert fhir.input_commitment(bodies) == result.input_commitment


def test_the_job_reads_only_the_declared_inputs_and_every_read_is_logged_with_its_id(
    seam_model, run_model_grant, alice_record, clinician
):
    grant = run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)
    diagnostic_job_execute(job_id=str(job.id))
    result = JobResult.objects.get(job=job)

    reads = _job_reads(job)
    assert {(e.actor, e.outcome, e.grant_ref, e.purpose) for e in reads} == {
        (f"job:{job.id}", "permit", grant.id, "TREAT")
    }
    logged = [ref for entry in reads for ref in entry.resource_ids]
    assert sorted(logged) == sorted(result.input_refs)
    # Exactly the Patient and the creatinine Observations, nothing else of the record.
    seen = seam_model.seen[0]
    assert len(seen["patient"]) == 1
    codes = {c["system"] + "|" + c["code"] for obs in seen["creatinine"] for c in obs["code"]["coding"]}
    assert codes <= set(CREATININE_CODES)
    assert seen["creatinine"]
    stored_creatinine = Resource.objects.filter(patient=alice_record, resource_type="Observation").count()
    assert len(seen["creatinine"]) < stored_creatinine

    writes = AccessLogEntry.objects.filter(actor=f"job:{job.id}", action="records.write")
    # One write stores the job's outputs, and its one entry names each of them.
    assert [e.resource_ids for e in writes.order_by("id")] == [[result.risk_assessment_ref, result.provenance_ref]]
    release = AccessLogEntry.objects.get(job_id=str(job.id), action="diagnostics.result.release")
    assert (release.outcome, release.resource_ids) == ("permit", [result.risk_assessment_ref, result.provenance_ref])
    assert (
        AccessLogEntry.objects.filter(job_id=str(job.id), action="diagnostics.job.request", outcome="permit").count()
        == 1
    )


def test_a_second_delivery_of_a_finished_job_does_nothing(seam_model, run_model_grant, alice_record, clinician):
    run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)
    diagnostic_job_execute(job_id=str(job.id))
    entries = AccessLogEntry.objects.count()
    resources = Resource.objects.filter(patient=alice_record).count()

    again = diagnostic_job_run.apply(args=[str(job.id)]).get()

    job.refresh_from_db()
    assert (again, job.deliveries) == ("succeeded", 1)
    assert AccessLogEntry.objects.count() == entries
    assert Resource.objects.filter(patient=alice_record).count() == resources
    assert Resource.objects.filter(patient=alice_record, resource_type="RiskAssessment").count() == 1


def test_the_database_refuses_a_second_result_for_one_job(seam_model, run_model_grant, alice_record, clinician):
    run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)
    diagnostic_job_execute(job_id=str(job.id))
    first = JobResult.objects.get(job=job)
    with pytest.raises(IntegrityError), transaction.atomic():
        JobResult.objects.create(
            job=job, risk_assessment_ref="RiskAssessment/x/_history/1", provenance_ref="Provenance/x/_history/1",
            input_commitment="0" * 64, output_hash="0" * 64, released_at=first.released_at,
        )  # fmt: skip


def test_the_patient_runs_a_model_on_her_own_record_for_herself(seam_model, alice_record, patient_user):
    job = diagnostic_job_request(requester=patient_user, patient=alice_record, model_id=SPEC.id)
    assert (job.purpose, job.grant_id) == ("PATRQT", None)
    assert diagnostic_job_execute(job_id=str(job.id)).status == "succeeded"
    assert {e.actor for e in _job_reads(job)} == {f"job:{job.id}"}


def test_a_batch_runs_each_job_on_its_own(seam_model, run_model_grant, alice_record, clinician, patient_user):
    run_model_grant()
    jobs = [
        diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id, enqueue=False),
        diagnostic_job_request(requester=patient_user, patient=alice_record, model_id=SPEC.id, enqueue=False),
    ]
    statuses = diagnostic_jobs_run_batch.apply(args=[[str(j.id) for j in jobs]]).get()
    assert statuses == ["succeeded", "succeeded"]
    assert JobResult.objects.filter(job__in=jobs).count() == 2


def test_a_clinician_without_a_grant_is_told_what_a_stranger_is_told_and_the_refusal_is_logged(
    seam_model, alice_record, other_clinician
):
    with pytest.raises(ResourceNotFound) as refused:
        diagnostic_job_request(requester=other_clinician, patient=alice_record, model_id=SPEC.id)
    assert refused.value.status == 404
    assert DiagnosticJob.objects.count() == 0
    entry = AccessLogEntry.objects.get(action="diagnostics.job.request")
    assert (entry.actor, entry.outcome) == (f"user:{other_clinician.pk}", "deny")


def test_a_read_grant_does_not_let_a_clinician_run_a_model(seam_model, run_model_grant, alice_record, clinician):
    run_model_grant(actions=["read"])
    with pytest.raises(ResourceNotFound):
        diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)


def test_a_run_model_grant_must_cover_every_resource_type_the_model_reads(
    seam_model, run_model_grant, alice_record, clinician
):
    run_model_grant(resource_types=["Observation"])  # the model also reads the Patient resource
    with pytest.raises(ResourceNotFound):
        diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)


def test_another_patient_cannot_run_a_model_on_alices_record(seam_model, alice_record, other_patient):
    with pytest.raises(ResourceNotFound):
        diagnostic_job_request(requester=other_patient.user, patient=alice_record, model_id=SPEC.id)


def test_an_unknown_model_is_a_bad_request(seam_model, alice_record, patient_user):
    with pytest.raises(UnknownModel) as refused:
        diagnostic_job_request(requester=patient_user, patient=alice_record, model_id="no-such-model")
    assert refused.value.status == 400


def test_a_clinician_cannot_choose_another_purpose_than_the_models(
    seam_model, run_model_grant, alice_record, clinician
):
    run_model_grant()
    with pytest.raises(InvalidJobRequest):
        diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id, purpose="HRESCH")


def test_a_record_without_the_inputs_ends_insufficient_data_and_stores_no_result(seam_model, patient, patient_user):
    bundle = {"resourceType": "Patient", "gender": "female", "birthDate": "1970-01-01"}
    from records.services import fhir_ingest

    fhir_ingest(payload=orjson.dumps(bundle), actor="system:test", patient=patient)
    job = diagnostic_job_request(requester=patient_user, patient=patient, model_id=SPEC.id)
    assert diagnostic_job_execute(job_id=str(job.id)).status == "insufficient-data"
    job.refresh_from_db()
    assert (job.status_reason, job.progress) == ("creatinine: not recorded", 100)
    assert job.reasons == [{"input": "creatinine", "kind": "missing"}]
    assert not JobResult.objects.filter(job=job).exists()
    assert not Resource.objects.filter(patient=patient, resource_type="RiskAssessment").exists()


def test_real_models_run_through_jobs_on_a_generated_record(alice_record, patient_user):
    inference = pytest.importorskip("diagnostics.inference")
    if not hasattr(inference, "list_models"):
        pytest.skip("diagnostics.inference has no models yet")
    statuses = {}
    for spec in inference.list_models():
        # The generated record ends in mid-2025: score it as of then, inside every model's lookback.
        job = diagnostic_job_request(
            requester=patient_user, patient=alice_record, model_id=spec.id, as_of=datetime.date(2025, 6, 30)
        )
        outcome = diagnostic_job_execute(job_id=str(job.id))
        job.refresh_from_db()
        assert outcome.status in ("succeeded", "insufficient-data"), (spec.id, job.status_reason)
        if outcome.status == "succeeded":
            result = JobResult.objects.get(job=job)
            risk = _read_as_alice(patient_user, alice_record, result.risk_assessment_ref)
            assert (risk["method"]["coding"][0]["code"], fhir.output_hash(risk)) == (spec.id, result.output_hash)
        else:
            assert job.reasons
            assert job.status_reason == "; ".join(job.reason_lines)[:255]
        statuses[spec.id] = outcome.status
    assert statuses["egfr-ckd-epi-2021"] == "succeeded"


OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.mark.parametrize("category", ["laboratory", "vital-signs"])
def test_a_grant_narrowed_to_a_category_gives_the_job_only_the_inputs_in_it(
    seam_model, run_model_grant, alice_record, clinician, category
):
    run_model_grant(categories=[f"Observation:{OBSERVATION_CATEGORY}|{category}"])
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)

    diagnostic_job_execute(job_id=str(job.id))

    served = seam_model.seen[0]["creatinine"]
    in_category = [
        obs for obs in served if any(c["code"] == category for cat in obs["category"] for c in cat["coding"])
    ]
    assert served == in_category
    # Creatinine is a laboratory result: the laboratory grant serves it, the vital-signs grant serves none of it.
    assert bool(served) is (category == "laboratory")
    logged = [ref for entry in _job_reads(job) for ref in entry.resource_ids]
    assert sorted(ref.split("/_history/")[0] for ref in logged) == sorted(
        [f"Patient/{alice_record.fhir_id}"] + [f"Observation/{obs['id']}" for obs in served]
    )
