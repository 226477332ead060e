"""In Chromium: times follow the browser's time zone until one is chosen, notifications show, e-mail is a choice."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from accounts.services import notification_create
from tests.portal.browser.test_numbers import VIEWPORTS
from tests.portal.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_time_zone_notifications_and_e_mail_choices(
    live_server, browser: Browser, patient_user, patient, tmp_path, viewport
) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(timezone_id="America/New_York", viewport=viewport)
    page = context.new_page()
    base = live_server.url
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(patient_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{base}/dashboard/")  # the first page tells the server the browser's zone, for the next ones
    page.goto(f"{base}/dashboard/")
    expect(page.get_by_text("Times are in America/New_York.")).to_be_visible()

    notification_create(
        user_id=patient_user.pk, kind="access.denied", text="Dr Mallory tried to open your record and was refused."
    )
    page.goto(f"{base}/notifications/")
    expect(page.locator(".notification.unread")).to_contain_text("Dr Mallory tried to open your record")

    page.goto(f"{base}/account/settings/")
    page.get_by_label("Someone tried to open my record and was refused").uncheck()
    page.get_by_role("button", name="Save my e-mail choices").click()
    expect(page.get_by_role("status")).to_contain_text("Saved: your e-mail choices.")
    expect(page.get_by_label("Someone tried to open my record and was refused")).not_to_be_checked()
    page.get_by_label("Show times in").select_option("Asia/Tokyo")
    page.get_by_role("button", name="Save the time zone").click()
    expect(page.get_by_text("Times are shown in Asia/Tokyo now.")).to_be_visible()
    page.screenshot(path=str(tmp_path / f"settings-{viewport['width']}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    context.close()
