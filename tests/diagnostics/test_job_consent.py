"""Consent during a job's life: revoked while queued, while reading, before release; the chain's own answer."""

from __future__ import annotations

import pytest

from audit.models import AccessLogEntry
from consent.models import Grant
from diagnostics import inference, services
from diagnostics.models import DiagnosticJob, JobResult
from diagnostics.services import consent_checks, diagnostic_job_execute, diagnostic_job_request
from diagnostics.services import inputs as job_inputs
from diagnostics.tasks import diagnostic_job_run
from healthledger.errors import ChainUnavailable
from records.models import Resource
from tests.diagnostics.jobs_support import *  # noqa: F403
from tests.diagnostics.jobs_support import SPEC
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db


def _released_nothing(job: DiagnosticJob, record) -> None:  # type: ignore[no-untyped-def]
    assert not JobResult.objects.filter(job=job).exists()
    assert not Resource.objects.filter(patient=record, resource_type__in=["RiskAssessment", "Provenance"]).exists()
    assert not AccessLogEntry.objects.filter(job_id=str(job.id), action="diagnostics.result.release").exists()
    assert not AccessLogEntry.objects.filter(actor=f"job:{job.id}", action="records.write").exists()


def test_a_grant_revoked_while_its_job_waits_in_the_queue_ends_it_denied_with_nothing_read_or_released(
    seam_model, run_model_grant, alice_record, clinician, patient_user
):
    grant = run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)
    grant_revoke_signed(grant=grant, by=patient_user)

    status = diagnostic_job_run.apply(args=[str(job.id)]).get()

    job.refresh_from_db()
    assert (status, job.status, job.deliveries) == ("denied", "denied", 1)
    assert job.status_reason.startswith("consent-ended")
    assert not AccessLogEntry.objects.filter(job_id=str(job.id), action__in=["records.read", "records.search"]).exists()
    assert seam_model.seen == []
    _released_nothing(job, alice_record)
    denial = AccessLogEntry.objects.get(job_id=str(job.id), action="diagnostics.job.run")
    assert (denial.actor, denial.outcome, denial.grant_ref) == (f"job:{job.id}", "deny", grant.id)


def test_a_revocation_between_the_start_check_and_the_read_is_refused_by_the_gate_and_releases_nothing(
    seam_model, run_model_grant, alice_record, clinician, patient_user, monkeypatch
):
    grant = run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)
    read = job_inputs.job_inputs_read

    def revoke_then_read(**kwargs):  # type: ignore[no-untyped-def]
        grant_revoke_signed(grant=Grant.objects.get(pk=grant.pk), by=patient_user)
        return read(**kwargs)

    monkeypatch.setattr(job_inputs, "job_inputs_read", revoke_then_read)

    assert diagnostic_job_execute(job_id=str(job.id)).status == "denied"
    job.refresh_from_db()
    assert job.status_reason == "consent-ended (read denied)"
    reads = AccessLogEntry.objects.filter(job_id=str(job.id), action__in=["records.read", "records.search"])
    # The job's one read of the record was refused and logged as refused; nothing was served to the model.
    assert [(e.action, e.outcome, e.resource_ids) for e in reads.order_by("id")] == [("records.search", "deny", [])]
    assert seam_model.seen == []
    _released_nothing(job, alice_record)


def test_a_revocation_while_the_model_runs_denies_the_release(
    seam_model, run_model_grant, alice_record, clinician, patient_user
):
    grant = run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)
    seam_model.during_run = lambda: grant_revoke_signed(grant=Grant.objects.get(pk=grant.pk), by=patient_user)

    assert diagnostic_job_execute(job_id=str(job.id)).status == "denied"
    job.refresh_from_db()
    assert job.status_reason == "consent-ended (no-grant)"
    _released_nothing(job, alice_record)


def test_a_grant_the_chain_no_longer_holds_active_denies_the_job(
    seam_model, run_model_grant, alice_record, clinician, monkeypatch
):
    run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)
    monkeypatch.setattr(consent_checks, "grant_active_on_chain", lambda grant: False)

    assert diagnostic_job_execute(job_id=str(job.id)).status == "denied"
    job.refresh_from_db()
    assert job.status_reason == "consent-ended (not active on chain)"
    assert not AccessLogEntry.objects.filter(job_id=str(job.id), action="records.search").exists()


def test_the_chain_is_asked_at_start_and_again_before_release(
    seam_model, run_model_grant, alice_record, clinician, monkeypatch
):
    grant = run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)
    asked: list[str] = []
    real = consent_checks.grant_active_on_chain

    def counting(grant_):  # type: ignore[no-untyped-def]
        asked.append(grant_.id)
        return real(grant_)

    monkeypatch.setattr(consent_checks, "grant_active_on_chain", counting)
    assert diagnostic_job_execute(job_id=str(job.id)).status == "succeeded"
    assert asked == [grant.id, grant.id]


def test_an_unreachable_chain_puts_the_job_back_in_the_queue_unread_and_a_later_delivery_completes_it(
    seam_model, run_model_grant, alice_record, clinician, monkeypatch
):
    run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)

    def down(grant):  # type: ignore[no-untyped-def]
        raise ChainUnavailable("chain node unavailable (ConnectionError)")

    monkeypatch.setattr(consent_checks, "grant_active_on_chain", down)
    outcome = diagnostic_job_execute(job_id=str(job.id))
    job.refresh_from_db()
    assert (outcome.status, outcome.retry_in, job.status, job.orderly_retries) == ("queued", 5, "queued", 1)
    assert not AccessLogEntry.objects.filter(job_id=str(job.id), action="records.search").exists()

    monkeypatch.undo()
    monkeypatch.setattr(inference, "get_model", lambda model_id: seam_model)
    assert diagnostic_job_execute(job_id=str(job.id)).status == "succeeded"
    job.refresh_from_db()
    assert (job.deliveries, job.orderly_retries) == (2, 1)


def test_a_chain_down_for_every_retry_ends_the_job_failed(
    seam_model, run_model_grant, alice_record, clinician, monkeypatch
):
    run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)

    def down(grant):  # type: ignore[no-untyped-def]
        raise ChainUnavailable("down")

    monkeypatch.setattr(consent_checks, "grant_active_on_chain", down)
    delays = [diagnostic_job_execute(job_id=str(job.id)).retry_in for _ in range(services.MAX_CHAIN_RETRIES + 1)]
    job.refresh_from_db()
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300, None]
    assert (job.status, job.status_reason) == ("failed", "chain unavailable")
    _released_nothing(job, alice_record)


def test_the_jobs_of_a_batch_ask_the_chain_once_per_block_and_again_once_a_block_is_mined(
    seam_model, run_model_grant, alice_record, clinician, monkeypatch
):
    from ledger.client import chain_client

    run_model_grant()
    jobs = [diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id) for _ in range(3)]
    asked: list[int] = []
    real = consent_checks.grant_active_on_chain

    def counting(grant_):  # type: ignore[no-untyped-def]
        asked.append(chain_client().block_number())
        return real(grant_)

    monkeypatch.setattr(consent_checks, "grant_active_on_chain", counting)
    monkeypatch.setattr(consent_checks, "BLOCK_MAX_AGE_SECONDS", 0)  # the block number asked at every check
    with services.chain_answers_per_block():
        first = chain_client().block_number()
        assert [diagnostic_job_execute(job_id=str(job.id)).status for job in jobs[:2]] == ["succeeded"] * 2
        # Four checks (two jobs, at start and before release) at one block: one question.
        assert asked == [first]
        chain_client().w3.provider.ethereum_tester.mine_blocks(1)  # type: ignore[attr-defined]
        assert diagnostic_job_execute(job_id=str(jobs[2].id)).status == "succeeded"
    assert asked == [first, first + 1]


def test_within_a_batch_a_grant_the_chain_no_longer_holds_active_still_denies_the_job(
    seam_model, run_model_grant, alice_record, clinician, monkeypatch
):
    run_model_grant()
    job = diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id)
    monkeypatch.setattr(consent_checks, "grant_active_on_chain", lambda grant: False)
    with services.chain_answers_per_block():
        assert diagnostic_job_execute(job_id=str(job.id)).status == "denied"
    job.refresh_from_db()
    assert job.status_reason == "consent-ended (not active on chain)"


def test_a_worker_asks_the_chain_once_per_block_across_its_batches_and_again_once_the_block_number_is_old(
    seam_model, run_model_grant, alice_record, clinician, monkeypatch
):
    from ledger.client import ChainClient, chain_client

    run_model_grant()
    jobs = [diagnostic_job_request(requester=clinician, patient=alice_record, model_id=SPEC.id) for _ in range(3)]
    asked: list[int] = []
    blocks_read: list[int] = []
    real_active, real_block = consent_checks.grant_active_on_chain, ChainClient.block_number

    def counting(grant_):  # type: ignore[no-untyped-def]
        asked.append(real_block(chain_client()))
        return real_active(grant_)

    def block_number(self):  # type: ignore[no-untyped-def]
        blocks_read.append(1)
        return real_block(self)

    monkeypatch.setattr(consent_checks, "grant_active_on_chain", counting)
    monkeypatch.setattr(ChainClient, "block_number", block_number)
    monkeypatch.setattr(consent_checks, "_view", consent_checks._ChainView())  # a fresh worker process
    monkeypatch.setattr(consent_checks, "BLOCK_MAX_AGE_SECONDS", 3600)
    first = real_block(chain_client())
    for job in jobs[:2]:  # two batches, one after the other, in one process
        with services.chain_answers_per_block():
            assert diagnostic_job_execute(job_id=str(job.id)).status == "succeeded"
    # Four checks (two jobs, at start and before release): one block number read, one isActive.
    assert (asked, len(blocks_read)) == ([first], 1)
    chain_client().w3.provider.ethereum_tester.mine_blocks(1)  # type: ignore[attr-defined]
    monkeypatch.setattr(consent_checks, "BLOCK_MAX_AGE_SECONDS", 0)  # the block number read is now too old
    with services.chain_answers_per_block():
        assert diagnostic_job_execute(job_id=str(jobs[2].id)).status == "succeeded"
    assert asked == [first, first + 1]
