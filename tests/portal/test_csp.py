"""The Content-Security-Policy header is on every page, allows no inline script or style, and the pages need none."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle=", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+=", re.IGNORECASE)


def _directives(header: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in (p.strip() for p in header.split(";")) if part}


def test_the_policy_allows_scripts_and_styles_from_the_site_only(db) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/login/")

    policy = _directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize(
    "path",
    ["/dashboard/", "/record/", "/sharing/", "/access/", "/erase/", "/account/security/?setup=1", "/nowhere/"],
)
def test_patient_pages_carry_the_policy_and_use_no_inline_script_style_or_handlers(alice, alice_record, path) -> None:
    response = alice.get(path)

    page = response.content.decode()
    assert "Content-Security-Policy" in response
    assert INLINE_SCRIPT.findall(page) == []
    assert STYLE_ATTRIBUTE.findall(page) == []
    assert EVENT_HANDLER.findall(page) == []


def test_scripts_are_served_from_the_project_itself(alice) -> None:
    page = alice.get("/record/").content.decode()

    sources = re.findall(r'<script src="([^"]+)"', page)
    assert sources == [
        "/static/portal/vendor/htmx.min.js",
        "/static/portal/vendor/chart.umd.min.js",
        "/static/portal/portal.js",
    ]
    for source in sources:
        assert finders.find(source.removeprefix("/static/")) is not None
