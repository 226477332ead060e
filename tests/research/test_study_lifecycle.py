"""The study state machine: one service, separation of duties, logged and notified."""

from __future__ import annotations

import pytest

from accounts.models import Notification
from accounts.services import user_create
from audit.models import AccessLogEntry
from research.models import StudyDecision
from research.services import StudyRefused, studies_close_ended, study_create, study_member_add, study_transition
from research.specs import InvalidSpec
from tests.research.conftest import spec

pytestmark = pytest.mark.django_db


@pytest.fixture
def submitted(researcher, steward):  # type: ignore[no-untyped-def]
    study = study_create(by=researcher, spec=spec())
    return study_transition(study=study, to="submitted", by=researcher)


def test_a_steward_reviews_and_approves_and_each_step_is_logged_and_notified(submitted, researcher, steward):
    study = study_transition(study=submitted, to="in-review", by=steward)
    study = study_transition(study=study, to="approved", by=steward, reason="ok")

    assert study.state == "approved"
    assert study.account is not None
    assert study.account.has_usable_password() is False
    actions = list(AccessLogEntry.objects.filter(action__startswith="research.study.").values_list("action", flat=True))
    assert actions == [
        "research.study.create",
        "research.study.submit",
        "research.study.review",
        "research.study.approve",
    ]
    assert Notification.objects.filter(user=researcher, kind="research.study.approve").count() == 1
    assert Notification.objects.filter(user=steward, kind="research.study.submit").count() == 1
    decision = StudyDecision.objects.filter(study=study).order_by("pk").last()
    assert (decision.from_state, decision.to_state, decision.by, decision.spec_hash) == (
        "in-review", "approved", steward, study.spec_hash,
    )  # fmt: skip


def test_a_steward_cannot_approve_a_study_they_are_on(submitted, researcher, steward):
    study_member_add(study=submitted, by=researcher, user=steward)

    with pytest.raises(StudyRefused, match="separation of duties"):
        study_transition(study=submitted, to="in-review", by=steward)


def test_a_steward_cannot_approve_their_own_study(steward, db):
    other = user_create(username="other_steward", password=None, role="steward")
    study = study_create(by=steward, spec=spec())
    study = study_transition(study=study, to="submitted", by=steward)

    with pytest.raises(StudyRefused, match="separation of duties"):
        study_transition(study=study, to="in-review", by=steward)
    assert study_transition(study=study, to="in-review", by=other).state == "in-review"


def test_a_researcher_cannot_approve_and_a_skipped_state_is_refused(submitted, researcher, steward):
    with pytest.raises(StudyRefused, match="only a data steward"):
        study_transition(study=submitted, to="in-review", by=researcher)
    with pytest.raises(StudyRefused, match="cannot go from submitted to approved"):
        study_transition(study=submitted, to="approved", by=steward)


def test_rejecting_or_returning_needs_a_reason_and_a_returned_study_can_be_resubmitted(submitted, researcher, steward):
    study = study_transition(study=submitted, to="in-review", by=steward)
    with pytest.raises(StudyRefused, match="reason is required"):
        study_transition(study=study, to="rejected", by=steward)

    study = study_transition(study=study, to="returned", by=steward, reason="say which ethics committee")
    study = study_transition(study=study, to="submitted", by=researcher)

    assert study.state == "submitted"


def test_a_study_past_its_end_date_closes_by_itself(submitted, steward, monkeypatch):
    from django.utils import timezone

    study = study_transition(study=submitted, to="in-review", by=steward)
    study = study_transition(study=study, to="approved", by=steward)

    assert studies_close_ended(now=study.ends_at) == 1
    study.refresh_from_db()
    assert study.state == "closed"
    assert AccessLogEntry.objects.filter(action="research.study.close", actor="system:research").count() == 1
    assert timezone.now() < study.ends_at


def test_a_spec_outside_the_catalogue_is_refused(researcher):
    with pytest.raises(InvalidSpec, match="unknown analysis"):
        study_create(by=researcher, spec=spec(analyses=[{"id": "select-star", "params": {}}]))


def test_a_patient_cannot_request_a_study(patient_user):
    with pytest.raises(StudyRefused):
        study_create(by=patient_user, spec=spec())
