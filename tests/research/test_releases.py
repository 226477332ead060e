"""Release: output check by stewards not on the study, provenance, and differencing across releases."""

from __future__ import annotations

import pytest

from accounts.services import user_create
from research.models import AnalysisRun, ReleaseStatus
from research.services import (
    StudyRefused,
    analysis_run_request,
    output_check,
    release_request,
    study_member_add,
)

pytestmark = pytest.mark.django_db


def _run(study, researcher, capture, index: int = 0) -> AnalysisRun:  # type: ignore[no-untyped-def]
    with capture(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=index)
    return AnalysisRun.objects.get(pk=run.pk)


@pytest.fixture
def second_steward(db):  # type: ignore[no-untyped-def]
    return user_create(username="sue_steward", password=None, role="steward")


def test_a_flagged_output_needs_two_independent_checkers_then_carries_its_provenance(
    recruiting_study, make_patient, join, researcher, steward, second_steward, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    join(study, [make_patient(diabetic=i < 3) for i in range(20)])
    run = _run(study, researcher, django_capture_on_commit_callbacks)
    assert run.report["flagged"] is True

    release = release_request(run=run, by=researcher)
    release = output_check(release=release, by=steward, approve=True)
    assert (release.checks_needed, release.status) == (2, ReleaseStatus.PENDING)
    release = output_check(release=release, by=second_steward, approve=True)

    assert release.status == ReleaseStatus.RELEASED
    provenance = release.provenance
    assert provenance["spec_hash"] == study.spec_hash
    assert provenance["cohort_commitment"] == run.cohort_root
    assert provenance["cohort_size_rounded"] == 20
    assert provenance["analysis"]["code_hash"].startswith("sha256:")


def test_a_steward_cannot_check_an_output_of_a_study_they_are_on(
    recruiting_study, make_patient, join, researcher, steward, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    join(study, [make_patient() for _ in range(20)])
    run = _run(study, researcher, django_capture_on_commit_callbacks)
    study_member_add(study=study, by=researcher, user=steward)
    release = release_request(run=run, by=researcher)

    with pytest.raises(StudyRefused, match="separation of duties"):
        output_check(release=release, by=steward, approve=True)


def test_two_releases_differing_by_one_participant_are_blocked_and_the_same_cohort_returns_the_earlier_result(
    recruiting_study, make_patient, join, researcher, steward, second_steward, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    join(study, [make_patient(cholesterol=150.0 + 3 * i) for i in range(20)])
    first = _run(study, researcher, django_capture_on_commit_callbacks, index=1)
    release = release_request(run=first, by=researcher)
    for checker in (steward, second_steward)[: release.checks_needed]:
        release = output_check(release=release, by=checker, approve=True)
    assert release.status == ReleaseStatus.RELEASED

    again = _run(study, researcher, django_capture_on_commit_callbacks, index=1)
    join(study, [make_patient(cholesterol=400.0)])
    plus_one = _run(study, researcher, django_capture_on_commit_callbacks, index=1)

    assert (again.status, again.result) == ("succeeded", first.result)
    assert {r["id"]: r["outcome"] for r in again.report["rules"]}["SDC-IDENTICAL"] == "applied"
    assert (plus_one.status, plus_one.result) == ("blocked", None)
    assert {r["id"]: r["outcome"] for r in plus_one.report["rules"]}["SDC-DIFFERENCING"] == "blocked"
    with pytest.raises(StudyRefused):
        release_request(run=plus_one, by=researcher)


def test_recruiting_invites_every_patient_and_a_release_tells_each_participant_of_the_run(
    recruiting_study, make_patient, join, researcher, steward, second_steward, django_capture_on_commit_callbacks
):
    from accounts.models import Notification

    outsider = make_patient()
    study = recruiting_study()
    patients = [make_patient(diabetic=i < 3) for i in range(20)]
    invited = set(Notification.objects.filter(kind="research.invitation").values_list("user_id", flat=True))
    assert outsider.user_id in invited  # everyone there when recruiting began, eligible or not
    join(study, patients)
    run = _run(study, researcher, django_capture_on_commit_callbacks)
    release = release_request(run=run, by=researcher)
    output_check(release=release, by=steward, approve=True)
    assert not Notification.objects.filter(kind="research.result").exists()  # not released yet
    output_check(release=release, by=second_steward, approve=True)

    told = Notification.objects.filter(kind="research.result")
    assert set(told.values_list("user_id", flat=True)) == {p.user_id for p in patients}
    assert outsider.user_id not in set(told.values_list("user_id", flat=True))
    assert all(n.link == "/research/mine/" for n in told)
