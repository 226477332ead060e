"""Key pages at 390x844 and 1280x800, compared with the screenshots committed in baselines/.

What would make them differ from run to run is held still: the record is generated from a fixed seed
up to a fixed date, the clinician and the grant have fixed names and terms, the browser's clock, time
zone and locale are fixed, animations and the caret are off, and what must follow the server's clock
(every <time>, grant ids, chain hashes) is masked with a solid box. The comparison still allows a
little: a pixel counts as different only when a channel moves by more than PIXEL_THRESHOLD (font
anti-aliasing), and a page passes while at most MAX_DIFF_RATIO of its pixels differ.

Re-record after an intended change of the pages: HL_UPDATE_SCREENSHOTS=1 pytest tests/portal/browser/test_screenshots.py
then look at the new PNGs before committing them. A failure leaves the page and a diff image in test-results/.
"""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from accounts.models import ClinicianProfile, User
from tests.conftest import REPO_ROOT
from tests.portal.browser.test_numbers import VIEWPORTS
from tests.portal.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BASELINES = Path(__file__).parent / "baselines"
RESULTS = REPO_ROOT / "test-results"
UPDATE = os.environ.get("HL_UPDATE_SCREENSHOTS", "") not in ("", "0")
PIXEL_THRESHOLD = 32  # of 255, per channel
MAX_DIFF_RATIO = 0.0001  # run to run on one machine kind it measured 0: this catches a changed word
BROWSER_CLOCK = "2026-06-01T09:00:00Z"
DYNAMIC = "time, [data-signed-from], [data-signed-until], code, .chain, .summary"


def diff_ratio(expected: Path, actual: Path, diff_out: Path | None = None) -> float:
    """The share of pixels that differ by more than PIXEL_THRESHOLD in any channel (1.0 if the sizes differ)."""
    from PIL import Image, ImageChops

    with Image.open(expected) as a, Image.open(actual) as b:
        if a.size != b.size:
            return 1.0
        delta = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
        mask = Image.merge("RGB", [band.point(lambda v: 255 if v > PIXEL_THRESHOLD else 0) for band in delta.split()])
        changed = mask.convert("L").point(lambda v: 255 if v else 0)
        count = changed.histogram()[255]
        if diff_out is not None and count:
            changed.save(diff_out)
        return count / (a.size[0] * a.size[1])


def _compare(page: Page, work: Path, name: str) -> tuple[str, float] | None:
    """Screenshot the page; record it as the baseline, or compare it with the baseline. A mismatch, or None.

    The shot is compared from this test's own directory (another run in the same checkout may be comparing
    too); only a mismatch is copied to test-results/, with its diff image.
    """
    page.evaluate("document.fonts.ready")
    shot = page.screenshot(
        full_page=True, animations="disabled", caret="hide", mask=[page.locator(DYNAMIC)], mask_color="#777777"
    )
    baseline = BASELINES / f"{name}.png"
    if UPDATE:
        BASELINES.mkdir(exist_ok=True)
        baseline.write_bytes(shot)
        return None
    actual = work / f"{name}.png"
    actual.write_bytes(shot)
    if not baseline.exists():
        return (f"{name}: no baseline (record with HL_UPDATE_SCREENSHOTS=1)", 1.0)
    ratio = diff_ratio(baseline, actual, work / f"{name}-diff.png")
    if ratio <= MAX_DIFF_RATIO:
        return None
    RESULTS.mkdir(exist_ok=True)
    shutil.copyfile(actual, RESULTS / f"screenshot-{name}.png")
    if (work / f"{name}-diff.png").exists():
        shutil.copyfile(work / f"{name}-diff.png", RESULTS / f"screenshot-{name}-diff.png")
    return (name, ratio)


@pytest.fixture
def fixed_people(patient_user, clinician):  # type: ignore[no-untyped-def]
    User.objects.filter(pk=patient_user.pk).update(first_name="Alice", last_name="Liddell")
    User.objects.filter(pk=clinician.pk).update(first_name="Jane", last_name="Smith")
    ClinicianProfile.objects.create(user=clinician, title="Dr", organisation="Riverside Clinic", specialty="Cardiology")


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_key_pages_look_as_they_did(
    live_server, browser: Browser, patient_user, alice_record, fixed_people, issue_grant, viewport, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    issue_grant(not_after=timezone.now() + timedelta(days=400))
    context = browser.new_context(viewport=viewport, timezone_id="UTC", locale="en-GB", reduced_motion="reduce")
    page = context.new_page()
    page.clock.install(time=BROWSER_CLOCK)
    base = live_server.url
    size = "phone" if viewport["width"] < 1000 else "laptop"
    mismatches = []

    page.goto(f"{base}/login/")
    mismatches.append(_compare(page, tmp_path, f"login-{size}"))
    page.get_by_label("Username").fill(patient_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your dashboard")).to_be_visible()

    page.goto(f"{base}/dashboard/")
    page.wait_for_load_state("networkidle")
    mismatches.append(_compare(page, tmp_path, f"dashboard-{size}"))

    page.goto(f"{base}/record/")
    page.locator("[data-drawn=true]").first.wait_for()
    page.wait_for_load_state("networkidle")
    mismatches.append(_compare(page, tmp_path, f"record-{size}"))

    page.goto(f"{base}/sharing/")
    mismatches.append(_compare(page, tmp_path, f"sharing-{size}"))

    page.goto(f"{base}/sharing/new/?q=riverside")
    mismatches.append(_compare(page, tmp_path, f"sharing-directory-{size}"))

    page.get_by_role("link", name="Choose Dr Jane Smith").click()
    page.get_by_label("Lab results").check()
    page.get_by_role("radio", name="Until a date I choose").check()
    page.get_by_label("Ends (only for “Until a date I choose”)").fill("2030-03-03T17:00")
    page.get_by_role("button", name="Next: check what you share").click()
    expect(page.locator("[data-review-sentence]")).to_have_text(
        "Dr Jane Smith at Riverside Clinic can see your lab results, for your care, until 3 March 2030 at 17:00."
    )
    # The signing script (a module, loaded after the page) settles the form: once, in CI, a shot taken before it
    # had loaded caught the page 109 px taller, blank below the footer, the same otherwise.
    page.wait_for_load_state("networkidle")
    mismatches.append(_compare(page, tmp_path, f"sharing-review-{size}"))

    context.close()
    assert [m for m in mismatches if m is not None] == []


def test_the_comparison_counts_only_pixels_that_really_moved(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image, ImageDraw

    base = Image.new("RGB", (100, 100), "white")
    base.save(tmp_path / "a.png")
    faint = base.copy()
    ImageDraw.Draw(faint).rectangle((0, 0, 99, 99), fill=(240, 240, 240))  # anti-aliasing-sized shifts
    faint.save(tmp_path / "faint.png")
    moved = base.copy()
    ImageDraw.Draw(moved).rectangle((0, 0, 9, 19), fill="black")  # 200 of 10,000 pixels
    moved.save(tmp_path / "moved.png")
    Image.new("RGB", (100, 101), "white").save(tmp_path / "taller.png")

    assert diff_ratio(tmp_path / "a.png", tmp_path / "a.png") == 0.0
    assert diff_ratio(tmp_path / "a.png", tmp_path / "faint.png") == 0.0
    assert diff_ratio(tmp_path / "a.png", tmp_path / "moved.png") == pytest.approx(0.02)
    assert diff_ratio(tmp_path / "a.png", tmp_path / "taller.png") == 1.0
