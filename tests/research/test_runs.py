"""Analysis runs end to end: frozen cohort, gated reads under each participant's grant, sums only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.merkle import verify_inclusion_path
from audit.models import AccessLogEntry
from research.models import AnalysisRun, RunChunk
from research.runs import cohort_inclusion, cohort_leaf
from research.services import analysis_run_request
from tests.patient_device import erasure_signatures, participation_withdraw_signed

pytestmark = pytest.mark.django_db


def _run(study, researcher, capture, index: int = 0) -> AnalysisRun:  # type: ignore[no-untyped-def]
    with capture(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=index)
    return AnalysisRun.objects.get(pk=run.pk)


def _reads(run: AnalysisRun):  # type: ignore[no-untyped-def]
    return AccessLogEntry.objects.filter(job_id=str(run.pk), action__in=["records.read", "records.search"])


def test_a_run_reads_every_participant_under_their_own_grant_and_releases_only_sums(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    patients = [make_patient(sex="female" if i % 2 else "male", diabetic=i < 12) for i in range(24)]
    joined = join(study, patients)

    run = _run(study, researcher, django_capture_on_commit_callbacks)

    assert (run.status, run.cohort_size) == ("succeeded", 24)
    reads = _reads(run)
    assert {e.patient_ref for e in reads.filter(outcome="permit")} == {p.pk for p in patients}
    grants = {j.patient_id: j.grant_id for j in joined}
    assert all(e.grant_ref == grants[e.patient_ref] and e.actor == f"job:{run.pk}" for e in reads)
    cells = {tuple(c["group"].values()): c for c in run.result["cells"]}
    # 6 diabetic women, 6 diabetic men, 6 + 6 without: every cell under 10 is suppressed.
    assert all(c["count"] is None for c in cells.values())
    assert all(chunk.partial is None for chunk in RunChunk.objects.filter(run=run))


def test_a_patient_who_did_not_join_is_never_read_and_the_log_proves_it(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    outsider = make_patient()
    join(study, [make_patient() for _ in range(20)])

    run = _run(study, researcher, django_capture_on_commit_callbacks)

    assert run.status == "succeeded"
    assert not AccessLogEntry.objects.filter(patient_ref=outsider.pk).exclude(actor="system:test").exists()
    assert _reads(run).count() >= 20


def test_a_withdrawn_participant_is_excluded_from_the_next_run(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    joined = join(study, [make_patient() for _ in range(22)])
    leaver = joined[0]
    first = _run(study, researcher, django_capture_on_commit_callbacks)
    participation_withdraw_signed(participation=leaver, by=leaver.patient.user)

    second = _run(study, researcher, django_capture_on_commit_callbacks, index=1)

    assert (first.cohort_size, second.cohort_size) == (22, 21)
    assert not _reads(second).filter(patient_ref=leaver.patient_id).exists()
    assert cohort_inclusion(run=second, grant_id=leaver.grant_id) is None


def test_a_participant_withdrawing_during_a_run_is_denied_at_the_next_read(
    recruiting_study, make_patient, join, researcher, monkeypatch
):
    from research import runs

    study = recruiting_study()
    joined = join(study, [make_patient() for _ in range(20)])
    run = analysis_run_request(study=study, by=researcher, analysis_index=0)
    chunks = runs.analysis_run_start(run_id=str(run.pk))
    leaver = joined[-1]
    participation_withdraw_signed(participation=leaver, by=leaver.patient.user)

    for index in chunks:
        runs.analysis_chunk_run(run_id=str(run.pk), index=index)
    done = runs.analysis_run_combine(run_id=str(run.pk))

    assert done.cohort_size == 20
    denied = _reads(done).filter(patient_ref=leaver.patient_id)
    assert [e.outcome for e in denied] == ["deny"]


def test_a_study_past_its_end_date_reads_nothing(recruiting_study, make_patient, join, researcher, monkeypatch):
    from research import runs

    study = recruiting_study()
    join(study, [make_patient() for _ in range(20)])
    run = analysis_run_request(study=study, by=researcher, analysis_index=0)
    later = study.ends_at + timedelta(days=1)
    monkeypatch.setattr(timezone, "now", lambda: later)

    assert runs.analysis_run_start(run_id=str(run.pk)) == []

    run.refresh_from_db()
    assert run.status == "failed"
    assert not _reads(run).exists()


def test_the_gate_denies_a_chunk_read_once_the_grants_have_ended(
    recruiting_study, make_patient, join, researcher, monkeypatch
):
    from research import runs

    study = recruiting_study()
    join(study, [make_patient() for _ in range(20)])
    run = analysis_run_request(study=study, by=researcher, analysis_index=0)
    chunks = runs.analysis_run_start(run_id=str(run.pk))
    later = study.ends_at + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)

    for index in chunks:
        runs.analysis_chunk_run(run_id=str(run.pk), index=index)

    assert not _reads(run).filter(outcome="permit").exists()
    assert _reads(run).filter(outcome="deny").count() == 20


def test_a_cohort_of_19_is_blocked_and_one_of_20_runs(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    join(study, [make_patient() for _ in range(19)])
    small = _run(study, researcher, django_capture_on_commit_callbacks)
    join(study, [make_patient()])
    enough = _run(study, researcher, django_capture_on_commit_callbacks)

    assert (small.status, small.cohort_size) == ("blocked", 19)
    rules = {r["id"]: r["outcome"] for r in small.report["rules"]}
    assert rules["SDC-COHORT-MIN"] == "blocked"
    assert not _reads(small).exists()
    assert (enough.status, enough.cohort_size) == ("succeeded", 20)


def test_each_participant_can_verify_their_inclusion_in_the_cohort_commitment(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    joined = join(study, [make_patient() for _ in range(21)])
    run = _run(study, researcher, django_capture_on_commit_callbacks)
    me = joined[5]

    proof = cohort_inclusion(run=run, grant_id=me.grant_id)

    assert proof is not None
    leaf = cohort_leaf(run_id=str(run.pk), grant_id=me.grant_id)
    path = [bytes.fromhex(p) for p in proof["path"]]
    assert verify_inclusion_path(leaf, proof["index"], proof["size"], path, bytes.fromhex(run.cohort_root))
    freeze = AccessLogEntry.objects.get(job_id=str(run.pk), action="research.run.freeze")
    assert f"cohort_root={run.cohort_root}" in freeze.query


def test_the_mean_of_an_observation_is_released_with_sd_and_quartiles_but_no_extremes(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    join(study, [make_patient(cholesterol=180.0 + 2 * i) for i in range(21)])

    run = _run(study, researcher, django_capture_on_commit_callbacks, index=1)

    assert run.status == "succeeded"
    assert (run.result["mean"], run.result["n"]) == (200.0, 20)
    assert run.result["quantiles"]["p50"] == pytest.approx(200.0, abs=1.0)
    assert not {"min", "max"} & set(run.result)


def test_task_messages_carry_ids_only(
    recruiting_study, make_patient, join, researcher, monkeypatch, django_capture_on_commit_callbacks
):
    import uuid

    from research import tasks

    sent: list[tuple[str, tuple]] = []  # type: ignore[type-arg]
    monkeypatch.setattr(tasks.analysis_run_start, "delay", lambda *args: sent.append(("start", args)))
    study = recruiting_study()
    join(study, [make_patient(cholesterol=211.1) for _ in range(20)])
    from django.db import transaction

    with transaction.atomic():
        run = analysis_run_request(study=study, by=researcher, analysis_index=1)
    chunk_args: list[tuple] = []  # type: ignore[type-arg]
    monkeypatch.setattr(tasks.analysis_chunk_run, "apply_async", lambda args, queue=None: chunk_args.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        tasks.analysis_run_start.apply(args=[str(run.pk)])

    assert sent == []  # queued on commit only; the test's transaction never commits
    assert chunk_args == [[str(run.pk), 0]]
    assert uuid.UUID(chunk_args[0][0]) == run.pk


def test_a_changed_spec_needs_approval_again_and_old_joins_are_not_read(
    recruiting_study, make_patient, join, researcher, steward, django_capture_on_commit_callbacks
):
    from research.services import StudyRefused, study_spec_update, study_transition
    from tests.research.conftest import spec

    study = recruiting_study()
    join(study, [make_patient() for _ in range(20)])

    changed = study_spec_update(study=study, by=researcher, spec=spec(summary="Now also by age band."))

    assert (changed.state, changed.version) == ("submitted", 2)
    with pytest.raises(StudyRefused):
        analysis_run_request(study=changed, by=researcher, analysis_index=0)
    for to in ("in-review", "approved", "recruiting"):
        changed = study_transition(study=changed, to=to, by=researcher if to == "recruiting" else steward)
    run = _run(changed, researcher, django_capture_on_commit_callbacks)
    assert (run.status, run.cohort_size) == ("blocked", 0)


def test_participants_of_a_changed_study_are_told_invited_again_and_counted_once_they_rejoin(
    recruiting_study, make_patient, join, researcher, steward, django_capture_on_commit_callbacks
):
    from accounts.models import Notification
    from research.selectors import invitations
    from research.services import study_spec_update, study_transition
    from tests.research.conftest import spec

    study = recruiting_study()
    patients = [make_patient() for _ in range(20)]
    first = join(study, patients)
    changed = study_spec_update(study=study, by=researcher, spec=spec(summary="Now also by age band."))
    for to in ("in-review", "approved", "recruiting"):
        changed = study_transition(study=changed, to=to, by=researcher if to == "recruiting" else steward)

    assert Notification.objects.filter(kind="research.study.changed").count() == 20
    assert invitations(patient=patients[0]) == [changed]
    again = join(changed, patients)
    run = _run(changed, researcher, django_capture_on_commit_callbacks)

    assert (run.status, run.cohort_size) == ("succeeded", 20)
    assert {m.participation_id for m in run.members.all()} == {p.pk for p in again}
    assert all(p.withdrawn_at is not None for p in type(first[0]).objects.filter(pk__in=[f.pk for f in first]))
    assert invitations(patient=patients[0]) == []


def test_eligibility_is_decided_in_the_worker_after_opt_in_and_only_eligible_participants_count(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    study = recruiting_study(eligibility={"sex": ["female"]})
    women = [make_patient(sex="female") for _ in range(20)]
    men = [make_patient(sex="male") for _ in range(5)]
    join(study, women + men)

    run = _run(study, researcher, django_capture_on_commit_callbacks)

    assert run.cohort_size == 25
    assert run.result["eligible_participants"] == 20
    assert {c["group"]["sex"] for c in run.result["cells"]} == {"female"}


def test_an_erased_participant_leaves_every_study_and_is_not_read_by_the_next_run(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    from consent.services import patient_record_erase
    from research.models import Participation

    study = recruiting_study()
    joined = join(study, [make_patient() for _ in range(21)])
    erased = joined[0]
    with django_capture_on_commit_callbacks(execute=True):
        patient_record_erase(
            patient=erased.patient,
            actor="system:test",
            revocation_signatures=erasure_signatures(erased.patient),  # her browser signs on the erase page
        )

    run = _run(study, researcher, django_capture_on_commit_callbacks)

    assert Participation.objects.get(pk=erased.pk).withdrawn_at is not None
    assert run.cohort_size == 20
    assert not _reads(run).filter(patient_ref=erased.patient_id).exists()


def test_a_run_reads_only_what_its_analysis_needs_and_still_asks_the_gate_for_every_participant(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    patients = [make_patient(cholesterol=180.0 + i) for i in range(20)]
    join(study, patients)

    run = _run(study, researcher, django_capture_on_commit_callbacks, index=1)  # observation-summary

    assert run.status == "succeeded"
    assert not _reads(run).filter(action="records.read").exists()  # age and sex are not needed: no Patient read
    assert not [r for e in _reads(run) for r in e.resource_ids if r.startswith("Patient/")]
    searched = _reads(run).filter(action="records.search", outcome="permit")
    assert sorted(searched.values_list("patient_ref", flat=True)) == sorted(p.pk for p in patients)
    assert all(len(e.resource_ids) == 1 and e.resource_ids[0].startswith("Observation/") for e in searched)


def test_each_participant_read_is_one_entry_naming_every_version_served_and_the_log_verifies(
    recruiting_study, make_patient, join, researcher, monkeypatch
):
    from audit.services import access_log_seal, access_log_verify
    from records.models import Resource
    from research import runs

    study = recruiting_study()
    patients = [make_patient(sex="female" if i % 2 else "male", diabetic=i % 3 == 0) for i in range(21)]
    joined = join(study, patients)
    monkeypatch.setattr("research.runs.cohort.CHUNK_SIZE", 8)  # three chunks: 8, 8 and 5 participants
    run = analysis_run_request(study=study, by=researcher, analysis_index=0)  # count-by-strata: Patient, Condition
    chunks = runs.analysis_run_start(run_id=str(run.pk))
    leaver = joined[4]
    participation_withdraw_signed(participation=leaver, by=leaver.patient.user)

    for index in chunks:
        runs.analysis_chunk_run(run_id=str(run.pk), index=index)
    done = runs.analysis_run_combine(run_id=str(run.pk))

    assert (chunks, done.status) == ([0, 1, 2], "succeeded")
    grants = {j.patient_id: j.grant_id for j in joined}
    permits = list(_reads(done).filter(outcome="permit"))
    assert sorted(e.patient_ref for e in permits) == sorted(p.pk for p in patients if p.pk != leaver.patient_id)
    for entry in permits:
        served = Resource.objects.filter(patient_id=entry.patient_ref, resource_type__in=["Patient", "Condition"])
        expected = {f"{r.resource_type}/{r.fhir_id}/_history/{r.current_version}" for r in served}
        assert (entry.action, entry.grant_ref) == ("records.search", grants[entry.patient_ref])
        assert sorted(entry.resource_ids) == sorted(expected)
        assert entry.resource_ids[0].startswith("Patient/")
    [denied] = _reads(done).filter(outcome="deny")
    assert (denied.patient_ref, denied.resource_ids) == (leaver.patient_id, [])
    assert access_log_seal()
    assert access_log_verify().ok
