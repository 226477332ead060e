"""Standing preferences: invitations only where a patient's DUO codes match; the 14-day objection period."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Notification
from consent.models import Grant
from research.models import ChangeNotice, Participation
from research.preferences import (
    InvalidPreference,
    change_notice_object,
    change_notices_settle,
    duo_matches,
    preference_set,
)
from research.selectors import invitations
from research.services import study_spec_update, study_transition
from tests.research.conftest import spec

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("allowed", "study", "commercial", "match"),
    [
        (["GRU"], ["HMB", "NCU", "IRB"], False, True),
        (["HMB"], ["HMB", "NCU"], False, True),
        (["HMB"], ["GRU"], False, False),  # a general-use study asks more than health research
        (["DS"], ["HMB"], False, False),
        (["DS"], ["DS", "IRB"], False, True),
        (["HMB", "NCU"], ["HMB", "IRB"], False, False),  # she requires no commercial use; the study does not commit
        (["HMB", "NCU"], ["HMB", "NCU"], True, False),  # a commercial study never matches NCU
        (["GRU", "IRB"], ["HMB", "IRB"], False, True),
        ([], ["HMB"], False, False),  # no uses allowed: invited to nothing
        (["NCU"], ["NCU"], False, False),  # conditions without any allowed use
        (["GRU"], ["NCU"], False, True),  # a study declaring no use counts as general research use
    ],
)
def test_a_study_matches_a_patients_duo_preferences(allowed, study, commercial, match):
    assert duo_matches(allowed=allowed, spec={"duo": study, "commercial": commercial}) is match


def test_only_patients_whose_preferences_match_are_invited(recruiting_study, make_patient):
    health_only = make_patient()
    disease_only = make_patient()
    by_default = make_patient()
    nothing = make_patient()
    preference_set(patient=health_only, by=health_only.user, duo=["HMB", "NCU"], findable=False, on_change="ask")
    preference_set(patient=disease_only, by=disease_only.user, duo=["DS"], findable=False, on_change="ask")
    preference_set(patient=nothing, by=nothing.user, duo=[], findable=False, on_change="ask")

    study = recruiting_study()  # HMB, NCU, IRB

    invited = set(Notification.objects.filter(kind="research.invitation").values_list("user_id", flat=True))
    assert invited == {health_only.user_id, by_default.user_id}
    assert invitations(patient=health_only) == [study]
    assert invitations(patient=by_default) == [study]
    assert invitations(patient=disease_only) == []
    assert invitations(patient=nothing) == []


def test_preferences_are_the_patients_own_and_use_known_codes(make_patient):
    alice, bob = make_patient(), make_patient()

    with pytest.raises(InvalidPreference):
        preference_set(patient=alice, by=bob.user, duo=["GRU"], findable=True, on_change="ask")
    with pytest.raises(InvalidPreference, match="XYZ"):
        preference_set(patient=alice, by=alice.user, duo=["XYZ"], findable=True, on_change="ask")
    saved = preference_set(patient=alice, by=alice.user, duo=["NCU", "HMB"], findable=True, on_change="notify")
    assert (saved.duo, saved.findable, saved.on_change) == (["HMB", "NCU"], True, "notify")


def _change_and_reapprove(study, researcher, steward):  # type: ignore[no-untyped-def]
    changed = study_spec_update(study=study, by=researcher, spec=spec(summary="Now also by age band."))
    for to in ("in-review", "approved", "recruiting"):
        changed = study_transition(study=changed, to=to, by=researcher if to == "recruiting" else steward)
    return changed


def test_after_14_days_unopposed_a_participant_who_chose_notice_is_asked_to_sign_for_the_new_version(
    recruiting_study, make_patient, join, researcher, steward
):
    stays, objects, asks = make_patient(), make_patient(), make_patient()
    for patient in (stays, objects):
        preference_set(patient=patient, by=patient.user, duo=["GRU"], findable=False, on_change="notify")
    study = recruiting_study()
    join(study, [stays, objects, asks])

    changed = _change_and_reapprove(study, researcher, steward)

    notices = {n.participation.patient_id: n for n in ChangeNotice.objects.select_related("participation")}
    assert set(notices) == {stays.pk, objects.pk}
    assert all(timedelta(days=13, hours=23) < n.due_at - timezone.now() <= timedelta(days=14) for n in notices.values())
    change_notice_object(notice=notices[objects.pk], by=objects.user)
    assert change_notices_settle(now=timezone.now() + timedelta(days=13)) == 0

    grants_before = Grant.objects.count()

    carried = change_notices_settle(now=timezone.now() + timedelta(days=14, minutes=1))

    # Nothing is signed in her name: the join of the new version is hers to sign, so she is asked.
    live = Participation.objects.filter(study=changed, withdrawn_at__isnull=True, spec_hash=changed.spec_hash)
    assert carried == 0
    assert not live.exists()
    assert Grant.objects.count() == grants_before
    assert ChangeNotice.objects.get(pk=notices[stays.pk].pk).outcome == "needs-her-signature"
    assert ChangeNotice.objects.get(pk=notices[objects.pk].pk).settled_at is None
    assert invitations(patient=asks) == [changed]  # asked again, not carried


def test_nobody_but_the_participant_objects(recruiting_study, make_patient, join, researcher, steward):
    patient = make_patient()
    preference_set(patient=patient, by=patient.user, duo=["GRU"], findable=False, on_change="notify")
    join(recruiting_study(), [patient])
    study = Participation.objects.get(patient=patient).study
    _change_and_reapprove(study, researcher, steward)
    notice = ChangeNotice.objects.get()

    with pytest.raises(InvalidPreference):
        change_notice_object(notice=notice, by=make_patient().user)
    assert ChangeNotice.objects.get(pk=notice.pk).objected_at is None


def test_the_patient_sets_her_preferences_on_her_research_page_and_invitations_follow(recruiting_study, make_patient):
    from django.test import Client

    from research.models import ResearchPreference

    study = recruiting_study()  # HMB, NCU, IRB
    patient = make_patient()
    client = Client()
    client.force_login(patient.user)

    saved = client.post("/research/mine/", {"duo": ["DS"], "findable": "on", "on_change": "notify"})
    page = client.get("/research/mine/")
    bad = client.post("/research/mine/", {"duo": ["ZZZ"], "on_change": "ask"})

    assert saved.status_code == 302
    preference = ResearchPreference.objects.get(patient=patient)
    assert (preference.duo, preference.findable, preference.on_change) == (["DS"], True, "notify")
    assert study.title not in page.content.decode()  # a health-research study no longer invites her
    assert bad.status_code == 400
    assert "ZZZ" in bad.content.decode()
