"""axe-core (npm, node_modules/axe-core) on the patient's pages and the clinician's two, in Chromium,
at 390x844 and 1280x800: no violations.

axe is added as an init script, which the page's Content-Security-Policy does not govern, so the pages
are checked with the policy they ship with. The rules are WCAG 2.0, 2.1 and 2.2 at levels A and AA,
and axe's best practices.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.models import ClinicianProfile, User
from accounts.services import notification_create
from tests.conftest import REPO_ROOT
from tests.portal.browser.test_numbers import VIEWPORTS
from tests.portal.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now: rule id, impact, and the first few offending nodes."""
    found = page.evaluate("async (options) => (await axe.run(document, options)).violations", AXE_OPTIONS)
    return [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [(n["target"], n.get("failureSummary", "")) for n in v["nodes"][:3]],
        }
        for v in found
    ]


def axe_page(browser: Browser, viewport: dict[str, int]) -> Page:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: npm install")
    context = browser.new_context(viewport=viewport)
    context.add_init_script(path=str(AXE))
    return context.new_page()


def _sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()


def _settled(page: Page) -> None:
    page.wait_for_load_state("networkidle")


def _states(base: str, observation_id: str, clinician_id: int) -> list[tuple[str, Callable[[Page], None]]]:
    def go(path: str) -> Callable[[Page], None]:
        return lambda page: page.goto(f"{base}{path}")

    def menu_open(page: Page) -> None:
        page.goto(f"{base}/dashboard/")
        toggle = page.get_by_role("button", name="Menu")
        if toggle.is_visible():
            toggle.click()

    def share_what_errors(page: Page) -> None:
        page.goto(f"{base}/sharing/new/what/?clinician={clinician_id}")
        page.get_by_label("See these records").uncheck()
        page.get_by_role("button", name="Next: check what you share").click()
        expect(page.get_by_role("alert").first).to_be_visible()

    def share_review(page: Page) -> None:
        page.goto(f"{base}/sharing/new/what/?clinician={clinician_id}")
        page.get_by_label("Lab results").check()
        page.get_by_role("button", name="Next: check what you share").click()
        expect(page.locator("[data-review-sentence]")).to_be_visible()

    def an_access(page: Page) -> None:
        page.goto(f"{base}/access/")
        page.locator("a[href^='/access/'][href$='/']").filter(has_not_text="Who saw").first.click()
        page.wait_for_url(re.compile(r"/access/\d+/$"))

    def chart_table(page: Page) -> None:
        page.goto(f"{base}/record/")
        page.locator("[data-drawn=true]").first.wait_for()
        page.get_by_text("Values as a table").first.click()

    return [
        ("dashboard", go("/dashboard/")),
        ("menu open", menu_open),
        ("record", go("/record/")),
        ("record, a chart's values as a table", chart_table),
        ("timeline, lab results", go("/record/timeline/laboratory/")),
        ("one result", go(f"/record/Observation/{observation_id}/")),
        ("sharing", go("/sharing/")),
        ("sharing: the directory", go("/sharing/new/")),
        ("sharing: a search that finds nobody", go("/sharing/new/?q=nobody-at-all")),
        ("sharing: what and how long", go(f"/sharing/new/what/?clinician={clinician_id}")),
        ("sharing: what, with errors", share_what_errors),
        ("sharing: the review", share_review),
        ("access log", go("/access/")),
        ("an access and its proof", an_access),
        ("notifications", go("/notifications/")),
        ("AI", go("/ai/")),
        ("research", go("/research/mine/")),
        ("your key", go("/keys/")),
        ("security", go("/account/security/")),
        ("settings", go("/account/settings/")),
        ("erase", go("/erase/")),
        ("privacy", go("/privacy/")),
    ]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_axe_finds_no_violations_on_the_patients_pages(
    live_server, browser: Browser, patient_user, issue_grant, an_observation, clinician, viewport
) -> None:  # type: ignore[no-untyped-def]
    User.objects.filter(pk=clinician.pk).update(first_name="Jane", last_name="Smith")
    ClinicianProfile.objects.create(user=clinician, title="Dr", organisation="Riverside Clinic", specialty="Cardiology")
    issue_grant()
    notification_create(user_id=patient_user.pk, kind="access.denied", text="Someone tried to open your record.")
    page = axe_page(browser, viewport)
    base = live_server.url

    signed_out: dict[str, list[dict[str, Any]]] = {}
    for name, path in (("sign in", "/login/"), ("sign up", "/signup/"), ("password reset", "/account/password/reset/")):
        page.goto(f"{base}{path}")
        _settled(page)
        signed_out[name] = axe_violations(page)

    _sign_in(page, base, patient_user.username)
    found: dict[str, list[dict[str, Any]]] = dict(signed_out)
    for name, reach in _states(base, an_observation.fhir_id, clinician.pk):
        reach(page)
        _settled(page)
        found[name] = axe_violations(page)

    # The clinician's side: who shared, and one shared record's listing.
    page.context.clear_cookies()
    _sign_in(page, base, clinician.username)
    for name, path in (
        ("clinician: shared with me", "/clinician/"),
        ("clinician: a shared record", f"/clinician/patients/{an_observation.patient_id}/?type=Observation"),
    ):
        page.goto(f"{base}{path}")
        _settled(page)
        found[name] = axe_violations(page)

    # The check is live: an image without a text alternative, added to the last page, is found.
    page.evaluate("document.querySelector('main').insertAdjacentHTML('beforeend', '<img src=\"/favicon.ico\">')")
    planted = [v["rule"] for v in axe_violations(page)]
    page.context.close()
    assert {name: v for name, v in found.items() if v} == {}
    assert planted == ["image-alt"]
