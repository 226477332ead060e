"""Times in the patient's own time zone: chosen in Settings, else her browser's, else UTC."""

from __future__ import annotations

import pytest

from portal.models import Preference

pytestmark = pytest.mark.django_db


def test_without_a_choice_or_a_browser_zone_times_are_utc(alice, patient) -> None:
    body = alice.get("/notifications/").content.decode()

    assert "Times are in UTC." in body


def test_the_browsers_time_zone_is_followed_until_one_is_chosen(alice, patient) -> None:
    alice.cookies["hl_tz"] = "America%2FNew_York"

    body = alice.get("/dashboard/").content.decode()

    assert "Times are in America/New_York." in body


def test_a_made_up_browser_zone_falls_back_to_utc(alice, patient) -> None:
    alice.cookies["hl_tz"] = "Mars%2FOlympus"

    assert "Times are in UTC." in alice.get("/dashboard/").content.decode()


def test_a_chosen_zone_wins_and_the_access_log_says_it(alice, patient) -> None:
    alice.cookies["hl_tz"] = "America%2FNew_York"

    saved = alice.post("/account/settings/", {"form": "time_zone", "time_zone": "Asia/Kolkata"})
    log = alice.get("/access/?mine=1").content.decode()

    assert saved.status_code == 302
    assert Preference.objects.get(user__username=patient.user.username).time_zone == "Asia/Kolkata"
    assert "When (Asia/Kolkata)" in log


def test_an_unknown_zone_is_refused_by_the_form(alice, patient) -> None:
    response = alice.post("/account/settings/", {"form": "time_zone", "time_zone": "Mars/Olympus"})

    assert response.status_code == 400
    assert not Preference.objects.exists()


def test_a_clinician_has_no_patient_settings_page(mallory) -> None:
    assert mallory.get("/account/settings/").status_code == 403


def test_the_patient_turns_off_e_mail_for_one_kind(alice, patient) -> None:
    from accounts.models import NotificationPreference
    from accounts.services import notification_email_wanted

    page = alice.get("/account/settings/").content.decode()
    saved = alice.post(
        "/account/settings/", {"form": "notifications", "email_kinds": ["access.first-read", "research.invitation"]}
    )

    assert "A clinician opened my record in an emergency" not in page  # mandatory: not a choice
    assert saved.status_code == 302
    assert set(NotificationPreference.objects.filter(email=False).values_list("kind", flat=True)) == {
        "access.denied",
        "consent.grant.expiring",
        "research.result",
        "research.study.changed",
    }
    assert notification_email_wanted(user_id=patient.user_id, kind="access.first-read")
    assert not notification_email_wanted(user_id=patient.user_id, kind="access.denied")
    assert notification_email_wanted(user_id=patient.user_id, kind="consent.break-glass")
