"""`make run`'s demo patient holds her own key: the seed made it as her device and left only its phrase, in a
file for the person who ran it. Restored from that phrase in a real browser, it signs her revocation; the
server never sees the phrase."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from consent.models import Grant, GrantStatus
from portal.management.commands.seed_demo import DEFAULT_DEMO_PASSWORD, phrase_path
from records.models import Patient

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSPHRASE = "a long passphrase for the demo browser"


def test_the_demo_patient_restores_her_key_from_the_phrase_file_and_signs_a_revocation(
    live_server, shot_on_failure, csp_violations, deployed, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    call_command("seed_demo", stdout=StringIO())
    phrase = phrase_path().read_text().strip()
    patient = Patient.objects.get(user__username="demo.patient")
    year_long = Grant.objects.get(patient=patient, purpose="TREAT", status=GrantStatus.RECORDED)
    page: Page = shot_on_failure
    base = live_server.url
    bodies: list[str] = []
    page.on("request", lambda request: bodies.append(request.post_data or ""))

    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill("demo.patient")
    page.get_by_label("Password").fill(DEFAULT_DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your dashboard")).to_be_visible()
    page.goto(f"{base}/keys/")
    expect(page.locator('[data-key-status="browser"]')).to_be_visible()
    expect(page.locator("[data-key-missing]")).to_be_visible()
    page.get_by_label("Your recovery phrase (24 words)").fill(phrase)
    page.locator("#recover-passphrase").fill(PASSPHRASE)
    page.locator("#recover-passphrase-again").fill(PASSPHRASE)
    page.get_by_role("button", name="Recover my key").click()
    expect(page.locator("[data-key-done]")).to_be_visible(timeout=30_000)

    page.goto(f"{base}/sharing/{year_long.pk}/revoke/")
    page.get_by_label("Your key's passphrase (it stays in this browser)").fill(PASSPHRASE)
    page.get_by_role("button", name="Yes, revoke access").click()
    expect(page.get_by_role("status")).to_contain_text("Access revoked", timeout=30_000)

    assert Grant.objects.get(pk=year_long.pk).status == GrantStatus.REVOKED
    words = phrase.split()
    for body in bodies:
        for secret in (phrase, "+".join(words), words[0] + "%20" + words[1], PASSPHRASE.replace(" ", "+")):
            assert secret not in body
    assert csp_violations == []
