"""After a break-glass read the patient is told at once, in the portal and by e-mail; a steward reviews each one."""

from __future__ import annotations

import pytest
from django.core import mail

from accounts.models import Notification
from consent import gate
from consent.gate import access_log_text
from consent.models import BreakGlassEpisode
from healthledger.celery import app as celery_app
from tests.portal.conftest import signed_in

pytestmark = pytest.mark.django_db

REASON = "Brought in unconscious to the emergency department, no relatives reachable."


def _break_glass(clinician, patient, observation) -> None:  # type: ignore[no-untyped-def]
    gate.resource_read(
        caller=gate.Caller(
            actor=clinician,
            purpose="ETREAT",
            reason=REASON,
            break_glass_code="unconscious-patient",
            interactive=True,
        ),
        patient=patient,
        resource_type="Observation",
        resource_id=observation.fhir_id,
    )


@pytest.fixture
def eager_tasks():  # type: ignore[no-untyped-def]
    # The e-mail task runs in process: these tests are about what is sent, not about the broker.
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


def test_the_patient_sees_the_notice_on_her_dashboard_and_her_notifications(
    alice, bob, alice_record, clinician, an_observation
):
    _break_glass(clinician, alice_record, an_observation)

    board = alice.get("/dashboard/").content.decode()
    notices = alice.get("/notifications/").content.decode()

    assert "dr_carol" in board
    assert "emergency" in board
    assert 'class="notification unread"' in notices
    assert "dr_carol" in notices
    assert "dr_carol" not in bob.get("/notifications/").content.decode()


def test_marking_notices_read_is_her_own_and_takes_a_post(alice, bob, alice_record, clinician, an_observation):
    _break_glass(clinician, alice_record, an_observation)

    assert alice.get("/notifications/read/").status_code == 405
    bob.post("/notifications/read/")
    assert Notification.objects.get().read_at is None
    answer = alice.post("/notifications/read/")

    assert answer.status_code == 302
    assert Notification.objects.get().read_at is not None
    assert 'class="notification unread"' not in alice.get("/notifications/").content.decode()


def test_the_email_says_only_that_there_is_something_to_see_and_where_to_sign_in(
    settings, eager_tasks, django_capture_on_commit_callbacks, patient_user, alice_record, clinician, an_observation
):
    settings.HEALTHLEDGER_PUBLIC_URL = "https://ledger.example"
    patient_user.email = "alice@example.org"
    patient_user.save(update_fields=["email"])

    with django_capture_on_commit_callbacks(execute=True) as queued:
        _break_glass(clinician, alice_record, an_observation)

    assert len(queued) == 1
    (message,) = mail.outbox
    assert message.to == ["alice@example.org"]
    assert message.subject == "Emergency access to your HealthLedger record"
    assert "https://ledger.example/login/?next=/access/" in message.body
    for secret in ("dr_carol", REASON, "unconscious", an_observation.fhir_id, str(alice_record.pk)):
        assert secret not in message.body
        assert secret not in message.subject
    assert Notification.objects.get().emailed_at is not None


def test_a_second_delivery_of_the_email_task_sends_nothing(
    eager_tasks, django_capture_on_commit_callbacks, patient_user, alice_record, clinician, an_observation
):
    from accounts.tasks import notification_email

    patient_user.email = "alice@example.org"
    patient_user.save(update_fields=["email"])
    with django_capture_on_commit_callbacks(execute=True):
        _break_glass(clinician, alice_record, an_observation)

    notification_email.delay(Notification.objects.get().pk)

    assert len(mail.outbox) == 1


def test_a_patient_without_an_email_address_is_told_in_the_portal_only(
    eager_tasks, django_capture_on_commit_callbacks, alice_record, clinician, an_observation
):
    with django_capture_on_commit_callbacks(execute=True):
        _break_glass(clinician, alice_record, an_observation)

    assert Notification.objects.filter(user=alice_record.user).count() == 1
    assert mail.outbox == []


def test_the_steward_lists_episodes_and_marks_one_reviewed_with_a_note(
    steward, alice_record, clinician, an_observation
):
    _break_glass(clinician, alice_record, an_observation)
    episode = BreakGlassEpisode.objects.get()
    sam = signed_in(steward)

    listing = sam.get("/steward/break-glass/").content.decode()
    missing_note = sam.post(f"/steward/break-glass/{episode.pk}/review/", {"note": ""})
    reviewed = sam.post(f"/steward/break-glass/{episode.pk}/review/", {"note": "On shift in the ED; justified."})

    assert "dr_carol" in listing
    assert REASON in listing
    assert "Not reviewed" in listing
    assert missing_note.status_code == 400
    assert reviewed.status_code == 302
    episode.refresh_from_db()
    note = access_log_text(patient_id=episode.patient_id, text=episode.review_note)
    assert (episode.reviewed_by, note) == (steward, "On shift in the ED; justified.")
    assert "On shift in the ED; justified." in sam.get("/steward/break-glass/").content.decode()


def test_nobody_but_a_steward_sees_or_reviews_episodes(alice, carol, alice_record, clinician, an_observation, client):
    _break_glass(clinician, alice_record, an_observation)
    episode = BreakGlassEpisode.objects.get()

    for someone in (alice, carol):
        assert someone.get("/steward/break-glass/").status_code == 403
        assert someone.post(f"/steward/break-glass/{episode.pk}/review/", {"note": "fine"}).status_code == 403
    assert client.get("/steward/break-glass/").status_code == 302  # to sign in
    assert BreakGlassEpisode.objects.get().reviewed_at is None
