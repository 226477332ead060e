"""Patients are told, once, of a refused attempt on their record, a clinician's first read, and access ending soon."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Notification, NotificationPreference
from consent.alerts import access_alerts_scan, grant_expiry_alerts
from consent.gate import Caller, resource_read
from healthledger.errors import ResourceNotFound

pytestmark = pytest.mark.django_db


@pytest.fixture
def observation_id(an_observation) -> str:  # type: ignore[no-untyped-def]
    return str(an_observation.fhir_id)


def _read(user, patient, resource_id: str) -> None:  # type: ignore[no-untyped-def]
    resource_read(
        caller=Caller(actor=user, purpose="TREAT"),
        patient=patient,
        resource_type="Observation",
        resource_id=resource_id,
    )


def test_a_clinicians_first_read_is_told_once(issue_grant, clinician, alice_record, observation_id) -> None:
    issue_grant()
    _read(clinician, alice_record, observation_id)
    _read(clinician, alice_record, observation_id)

    access_alerts_scan()
    access_alerts_scan()

    notices = Notification.objects.filter(user=alice_record.user, kind="access.first-read")
    assert [n.text for n in notices] == ["dr_carol read your record for the first time, under the access you gave."]


def test_a_refused_attempt_is_told_once_a_day_per_person(other_clinician, alice_record, observation_id) -> None:
    for _ in range(3):
        with pytest.raises(ResourceNotFound):
            _read(other_clinician, alice_record, observation_id)

    access_alerts_scan()

    notices = Notification.objects.filter(user=alice_record.user, kind="access.denied")
    assert notices.count() == 1
    assert notices.get().text.startswith(f"{other_clinician.username} tried to open your record and was refused")


def test_the_patients_own_reads_tell_her_nothing(alice_record, observation_id) -> None:
    resource_read(
        caller=Caller(actor=alice_record.user),
        patient=alice_record,
        resource_type="Observation",
        resource_id=observation_id,
    )

    assert access_alerts_scan() >= 1
    assert not Notification.objects.filter(user=alice_record.user).exists()


def test_access_ending_within_a_week_is_told_once(issue_grant, alice_record, clinician) -> None:
    issue_grant(not_after=timezone.now() + timedelta(days=3))
    issue_grant(not_after=timezone.now() + timedelta(days=20))

    assert grant_expiry_alerts(now=timezone.now()) == 1
    grant_expiry_alerts(now=timezone.now())

    notices = Notification.objects.filter(user=alice_record.user, kind="consent.grant.expiring")
    assert notices.count() == 1
    assert notices.get().text.startswith("The access you gave dr_carol ends on ")


def test_an_alert_e_mail_names_no_one_and_none_goes_when_turned_off(
    django_capture_on_commit_callbacks, settings, other_clinician, alice_record, observation_id
) -> None:  # type: ignore[no-untyped-def]
    from healthledger.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    alice_record.user.email = "alice@example.org"
    alice_record.user.save()
    with pytest.raises(ResourceNotFound):
        _read(other_clinician, alice_record, observation_id)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            access_alerts_scan()
        assert len(mail.outbox) == 1
        assert other_clinician.username not in mail.outbox[0].body
        assert "Observation" not in mail.outbox[0].body

        NotificationPreference.objects.create(user=alice_record.user, kind="access.first-read", email=False)
        NotificationPreference.objects.create(user=alice_record.user, kind="access.denied", email=False)
        Notification.objects.all().delete()
        with django_capture_on_commit_callbacks(execute=True):
            from accounts.services import notification_create

            notification_create(user_id=alice_record.user_id, kind="access.denied", text="x")
            notification_create(user_id=alice_record.user_id, kind="consent.break-glass", text="y")
        assert len(mail.outbox) == 2  # break-glass always goes; the refused attempt did not
    finally:
        app.conf.task_always_eager = False
