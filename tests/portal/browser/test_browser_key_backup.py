"""The server backup of the key in a real browser: turn it on, restore on a fresh profile with the backup passphrase
(a wrong one is named as such), sign with the restored key; a rotation makes the backup stale.

Every request body is recorded: none carries the private key, the recovery phrase, the browser passphrase or the
backup passphrase. The chain is the in-process EVM.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from consent.models import Grant, KeyBackup
from records.models import Patient
from tests.portal.browser.test_browser_keys import (
    PASSPHRASE,
    PASSWORD,
    _choose,
    _confirm_phrase,
    _key_of,
    _record_bodies,
    _sign_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BACKUP_PASSPHRASE = "another long phrase only for the server backup"
FRESH_PASSPHRASE = "the passphrase of the fresh profile"


def _grant_with(page: Page, base: str, passphrase: str) -> None:
    """A grant signed in this profile, after its plain-words review."""
    _choose(page, base)
    page.get_by_label("Your key's passphrase (it stays in this browser)").fill(passphrase)
    page.get_by_role("button", name="Sign and grant access").click()
    expect(page.get_by_role("status")).to_contain_text("Access granted", timeout=30_000)


def _restore(page: Page, backup_passphrase: str) -> None:
    page.get_by_label("Your backup passphrase").fill(backup_passphrase)
    page.locator("#restore-passphrase").fill(FRESH_PASSPHRASE)
    page.locator("#restore-passphrase-again").fill(FRESH_PASSPHRASE)
    page.get_by_role("button", name="Restore my key from the server backup").click()


def test_backup_then_restore_on_a_fresh_profile_without_any_secret_in_a_request(
    live_server, browser: Browser, shot_on_failure, csp_violations, deployed, patient, clinician
) -> None:  # type: ignore[no-untyped-def]
    Patient.objects.filter(pk=patient.pk).update(wallet_address="", wallet_ciphertext=None)  # a new patient
    page: Page = shot_on_failure
    base = live_server.url
    bodies: list[str] = []
    _record_bodies(page, bodies)
    _sign_in(page, base)
    page.goto(f"{base}/keys/")
    page.get_by_label("A passphrase for this browser (at least 10 characters)").fill(PASSPHRASE)
    page.get_by_label("The passphrase again").fill(PASSPHRASE)
    page.get_by_label("Your account password (asked again for this)").fill(PASSWORD)
    page.get_by_role("button", name="Create my key").click()
    words = _confirm_phrase(page)
    key_hex = _key_of(words)
    address = Patient.objects.get(pk=patient.pk).wallet_address

    # Turn the backup on: the browser opens its key with the local passphrase and seals it under the backup one.
    page.goto(f"{base}/keys/")
    expect(page.locator('[data-key-backup="none"]')).to_be_visible()
    page.get_by_label("The passphrase of the key in this browser").fill(PASSPHRASE)
    page.get_by_label("A backup passphrase (at least 12 characters, not your account password)").fill(BACKUP_PASSPHRASE)
    page.get_by_label("The backup passphrase again").fill(BACKUP_PASSPHRASE)
    page.get_by_role("button", name="Turn on server backup").click()
    expect(page.locator("[data-backup-current]")).to_be_visible(timeout=30_000)
    backup = KeyBackup.objects.get(patient=patient)
    assert backup.address == address
    assert bytes.fromhex(key_hex) not in bytes(backup.ciphertext)

    # A fresh profile, after sign-in: no key here; the page offers the server backup.
    fresh_context = browser.new_context()
    fresh = fresh_context.new_page()
    _record_bodies(fresh, bodies)
    fresh.on("console", lambda msg: csp_violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    _sign_in(fresh, base)
    fresh.goto(f"{base}/keys/")
    expect(fresh.locator("[data-key-missing]")).to_be_visible()
    expect(fresh.locator("[data-key-missing]")).to_contain_text("restore it from your server backup")

    _restore(fresh, "not the backup passphrase at all")
    expect(fresh.locator("[data-key-error]")).to_have_text(
        "That backup passphrase does not open your server backup. Check it and try again.", timeout=30_000
    )
    expect(fresh.locator("[data-key-done]")).to_be_hidden()

    _restore(fresh, BACKUP_PASSPHRASE)
    expect(fresh.locator("[data-key-done]")).to_be_visible(timeout=30_000)
    fresh.goto(f"{base}/keys/")
    expect(fresh.locator("[data-key-here]")).to_be_visible()

    # The restored key, under this profile's own passphrase, signs a grant the server accepts.
    _grant_with(fresh, base, FRESH_PASSPHRASE)
    assert Grant.objects.get().patient_address == address

    # A rotation registers another key: the backup is stale, the page says so and offers no restore.
    fresh.goto(f"{base}/keys/")
    fresh.get_by_label("Your current passphrase").fill(FRESH_PASSPHRASE)
    fresh.locator("#rotate-passphrase").fill(FRESH_PASSPHRASE)
    fresh.locator("#rotate-passphrase-again").fill(FRESH_PASSPHRASE)
    fresh.get_by_role("button", name="Replace my key").click()
    new_words = _confirm_phrase(fresh)
    fresh.goto(f"{base}/keys/")
    expect(fresh.locator("[data-backup-stale]")).to_contain_text("no longer registered for you")
    expect(fresh.get_by_role("button", name="Restore my key from the server backup")).to_have_count(0)
    fresh_context.close()

    secrets_seen = [
        key_hex,
        _key_of(new_words),
        " ".join(words),
        "+".join(words),
        words[0] + "%20" + words[1],
    ]
    for phrase in (PASSPHRASE, BACKUP_PASSPHRASE, FRESH_PASSPHRASE, "not the backup passphrase at all"):
        secrets_seen += [phrase, phrase.replace(" ", "+"), phrase.replace(" ", "%20")]
    assert sum("ciphertext=0x" in body for body in bodies) == 1  # the one upload, ciphertext only
    for body in bodies:
        for secret in secrets_seen:
            assert secret.lower() not in body.lower()
    assert csp_violations == []
