"""In Chromium, at a phone's 390x844 and a laptop's 1280x800: a second provider's file with Synthea's blood-pressure
order and a weight in pounds imports without a reload, its numbers read right, and the table stays in its card."""

from __future__ import annotations

import orjson
import pytest
from playwright.sync_api import Page, expect

from tests.portal.conftest import PASSWORD
from tests.portal.test_numbers import BUNDLE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = [
    pytest.param({"width": 390, "height": 844}, id="phone"),
    pytest.param({"width": 1280, "height": 800}, id="laptop"),
]


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    def lum(rgb: tuple[int, int, int]) -> float:
        parts = [(c / 255) / 12.92 if c / 255 <= 0.03928 else (((c / 255) + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * parts[0] + 0.7152 * parts[1] + 0.0722 * parts[2]

    high, low = sorted((lum(a), lum(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _rgb(css: str) -> tuple[int, int, int]:
    r, g, b = (int(float(x)) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return r, g, b


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_second_providers_numbers_read_right_at_both_sizes(
    live_server, shot_on_failure, csp_violations, patient_user, patient, tmp_path, viewport
) -> None:  # type: ignore[no-untyped-def]
    page: Page = shot_on_failure
    page.set_viewport_size(viewport)
    base = live_server.url
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(patient_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{base}/record/")
    expect(page.locator("#record-summary")).to_have_text("Your record is empty.")
    # Navigation fits: one line on a laptop, a Menu button on a phone.
    links = page.locator("#main-nav a")
    if viewport["width"] < 1000:
        expect(links.first).to_be_hidden()
        page.get_by_role("button", name="Menu").click()
        expect(page.get_by_role("link", name="Who saw my data")).to_be_visible()
        page.get_by_role("button", name="Menu").click()
    else:
        expect(page.get_by_role("button", name="Menu")).to_be_hidden()
        tops = {round(links.nth(i).bounding_box()["y"]) for i in range(links.count())}  # type: ignore[index]
        assert len(tops) == 1, tops

    upload = tmp_path / "hilltop.json"
    upload.write_bytes(orjson.dumps(BUNDLE))
    page.get_by_label("FHIR file").set_input_files(str(upload))
    page.get_by_label("Where is this file from?").fill("Hilltop Hospital")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-result")).to_contain_text("from Hilltop Hospital: 7 new")

    # No reload: the summary and the charts follow the import.
    expect(page.locator("#record-summary")).to_contain_text("6 Observation")
    weight = page.locator("#chart-weight")
    expect(weight).to_have_attribute("data-drawn", "true")
    weight.get_by_text("Values as a table").click()
    first = weight.locator("table tbody tr").first
    expect(first).to_contain_text("83.9")
    expect(first).to_contain_text("185 [lb_av]")
    expect(weight.locator("tr.refused")).to_contain_text("cm cannot be converted to kg")
    # The table scrolls inside its card rather than drawing over the neighbour.
    card, wrap = weight.bounding_box(), weight.locator(".table-wrap").bounding_box()
    assert card is not None
    assert wrap is not None
    assert wrap["x"] + wrap["width"] <= card["x"] + card["width"] + 1

    page.locator("a", has_text="Vital signs").first.click()
    page.locator("a", has_text="Lab results").first.click()
    expect(page.locator("#timeline-panel")).to_contain_text("Hilltop Hospital")
    page.goto(f"{base}/record/Observation/{_bp_id(patient)}/")
    expect(page.locator(".big-value")).to_contain_text("107/73 mmHg")
    page.get_by_text("Exact value").click()
    expect(page.locator("details.exact")).to_contain_text("106.5/73.3 mmHg")

    # The focus ring stands out from the page: WCAG asks 3:1.
    page.get_by_role("link", name="← My record").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineColor")
    assert _contrast(_rgb(outline), (255, 255, 255)) >= 3
    page.screenshot(path=str(tmp_path / f"resource-{viewport['width']}.png"), full_page=True)

    # The access log fits: no sideways scrolling, the Verified column on screen, at both sizes.
    page.goto(f"{base}/access/?mine=1")
    expect(page.locator("table.access tbody tr").first).to_be_visible()
    assert page.evaluate(
        "(() => { const w = document.querySelector('.table-wrap'); return w.scrollWidth <= w.clientWidth; })()"
    )
    verified = page.locator("table.access tbody tr").first.locator("td").last.bounding_box()
    assert verified is not None
    assert verified["x"] + verified["width"] <= viewport["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    assert csp_violations == []


def _bp_id(patient) -> str:  # type: ignore[no-untyped-def]
    from records.models import Resource

    rows = Resource.objects.filter(patient=patient, resource_type="Observation").order_by("pk")
    return str(rows[0].fhir_id)  # the bundle's first observation is the blood pressure
