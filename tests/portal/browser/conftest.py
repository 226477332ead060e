"""Playwright driving Debian's Chromium against a live server; a screenshot is saved when a test fails.

The browser download is blocked on these machines: the tests use /usr/bin/chromium
(`apt-get install -y chromium`). Playwright's sync API keeps an event loop running, so
Django's async-safety check must be told these tests are synchronous.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
RESULTS = REPO_ROOT / "test-results"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, object]) -> dict[str, object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    }


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def shot_on_failure(request, page) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """The page, screenshotted into test-results/ if the test fails."""
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        RESULTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        page.screenshot(path=str(RESULTS / f"{name}.png"), full_page=True)


@pytest.fixture
def csp_violations(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Console messages in which Chromium reports a Content-Security-Policy violation."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None)
    return seen


@pytest.fixture(autouse=True)
def server_database_shares_connections() -> None:
    """The live server answers from threads; SQLite's in-memory test database makes them take turns on one
    connection and fails a request that overlaps another (the portal's import while its charts load). A real
    deployment's SQLite is a WAL file and does not do this. CI runs these tests on PostgreSQL; there a skip
    would hide the portal, so it fails instead."""
    from django.db import connection

    if connection.vendor == "sqlite":
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests on PostgreSQL (DATABASE_URL)")
        pytest.skip("browser tests need a database the live server's threads can share: set DATABASE_URL to PostgreSQL")
