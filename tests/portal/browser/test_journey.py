"""One whole journey in a real browser, as the issue tells it.

Sign up; import a Synthea bundle; see the blood-pressure chart; grant a clinician; the
clinician reads through the FHIR API; after sealing and anchoring, the patient sees that
access marked verified; she revokes; the clinician's next read is denied; she sees the
denied attempt. The chain is the in-process EVM; the relay, sealing and anchoring run in
process between steps (the worker-process path is tested in tests/integration).
"""

from __future__ import annotations

import json
import re

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from accounts.models import ClinicianProfile
from audit.anchoring import access_log_anchor
from audit.services import access_log_seal
from consent.models import Grant
from healthledger.celery import app as celery_app
from ledger.outbox import outbox_relay
from records.models import Resource
from tests.api.conftest import basic, register_app

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a sturdy passphrase 7"
KEY_PASSPHRASE = "the passphrase of my signing key"


@pytest.fixture
def eager_celery():  # type: ignore[no-untyped-def]
    """Tasks queued on commit (the outbox relay) run in process instead of going to a broker."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def _relay_and_anchor() -> None:
    outbox_relay()
    outbox_relay()
    access_log_seal()
    access_log_anchor(force=True)
    outbox_relay()
    outbox_relay()


def _fhir_read(page: Page, base: str, token: str, resource: Resource) -> int:
    response = page.request.get(
        f"{base}/fhir/Observation/{resource.fhir_id}", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status


def _clinician_token(page: Page, base: str, clinician) -> str:  # type: ignore[no-untyped-def]
    """A client-credentials token acting as the clinician, from the OAuth2 token endpoint over HTTP."""
    app, secret = register_app(clinician)
    response = page.request.post(
        f"{base}/oauth/token/",
        form={"grant_type": "client_credentials", "scope": "user/*.rs", "purpose_of_use": "TREAT"},
        headers={"Authorization": basic(app.client_id, secret)},
    )
    assert response.status == 200, response.text()
    return str(response.json()["access_token"])


def test_the_whole_patient_journey(
    live_server, shot_on_failure, csp_violations, deployed, eager_celery, clinician, synthea_files
) -> None:  # type: ignore[no-untyped-def]
    page: Page = shot_on_failure
    base = live_server.url

    # Sign up.
    page.goto(f"{base}/signup/")
    page.get_by_label("Username").fill("dora")
    page.get_by_label("First name").fill("Dora")
    page.get_by_label("Last name").fill("Ng")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Email").fill("dora@example.org")
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    # The link in the e-mail activates the account (the test's e-mail backend keeps it in memory); then sign in.
    link = re.search(r"/signup/confirm/\S+/", mail.outbox[-1].body)
    assert link is not None
    page.goto(f"{base}{link.group(0)}")
    expect(page.get_by_role("heading", name="Your account is ready")).to_be_visible()
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your dashboard")).to_be_visible()

    # Import a Synthea bundle, with the progress shown and the result announced.
    bundle = synthea_files[1]
    entries = len(json.loads(bundle.read_text())["entry"])
    page.get_by_role("link", name="My record").click()
    page.get_by_label("FHIR file").set_input_files(str(bundle))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-result")).to_contain_text(f"{entries} new, 0 updated")

    # The blood-pressure chart is drawn from the imported observations.
    page.reload()
    chart = page.locator("#chart-blood-pressure")
    expect(chart).to_have_attribute("data-drawn", "true")
    assert int(chart.get_attribute("data-points") or 0) > 0
    chart.get_by_text("Values as a table").click()
    expect(chart.locator("table tbody tr").first).to_be_visible()

    # She creates her signing key in the browser (a new account has none), writes down the phrase, checks two words.
    page.get_by_role("link", name="Your key").click()
    page.get_by_label("A passphrase for this browser (at least 10 characters)").fill(KEY_PASSPHRASE)
    page.get_by_label("The passphrase again").fill(KEY_PASSPHRASE)
    page.get_by_label("Your account password (asked again for this)").fill(PASSWORD)
    page.get_by_role("button", name="Create my key").click()
    expect(page.locator("[data-phrase-panel]")).to_be_visible(timeout=30_000)
    words = page.locator("[data-phrase-words] li").all_inner_texts()
    for i in (0, 1):
        number = int(page.locator(f"[data-check-label-{i}]").inner_text().split()[-1])
        page.locator(f"#check-{i}").fill(words[number - 1])
    page.get_by_role("button", name="I wrote it down: register my key").click()
    expect(page.locator("[data-key-done]")).to_be_visible(timeout=30_000)

    # Grant the clinician access to observations for treatment, for 30 days, read in plain words and signed here.
    # She finds the clinician in the directory by clinic, chooses what in plain categories, and reads it back.
    ClinicianProfile.objects.create(user=clinician, organisation="Riverside Clinic", specialty="Cardiology")
    page.get_by_role("link", name="Sharing", exact=True).click()
    page.get_by_role("link", name="Share your record with a clinician").click()
    page.get_by_label("Search by name, organisation or specialty").fill("riverside")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Choose dr_carol").click()
    page.get_by_label("All measurements and test results").check()
    page.get_by_role("button", name="Next: check what you share").click()
    expect(page.locator("[data-review-sentence]")).to_contain_text(
        "dr_carol at Riverside Clinic can see your measurements and test results, for your care, until"
    )
    page.get_by_label("Your key's passphrase (it stays in this browser)").fill(KEY_PASSPHRASE)
    page.get_by_role("button", name="Sign and grant access").click()
    expect(page.get_by_role("status")).to_contain_text("Access granted", timeout=30_000)
    _relay_and_anchor()
    grant = Grant.objects.get()
    assert grant.status == "recorded"
    page.reload()
    expect(page.locator(f"#grant-{grant.pk}")).to_contain_text("Active · recorded on chain")
    expect(page.locator(f"#grant-{grant.pk}")).to_contain_text(f"in block {grant.block_number}")

    # The clinician reads one of her observations through the FHIR API.
    observation = Resource.objects.filter(patient=grant.patient, resource_type="Observation").order_by("pk").first()
    token = _clinician_token(page, base, clinician)
    assert _fhir_read(page, base, token, observation) == 200

    # Once sealed and anchored, the patient sees that access, verified against the chain.
    _relay_and_anchor()
    page.get_by_role("link", name="Who saw my data").click()
    row = page.locator("tr", has_text="dr_carol (Clinician)").filter(has_text="Permitted").first
    expect(row).to_contain_text("✔ Verified")
    row.get_by_role("link", name="Verified").click()
    expect(page.locator(".notice.ok")).to_contain_text("This entry, exactly as shown, is included")
    expect(page.locator(".notice.ok")).to_contain_text("transaction 0x")

    # She revokes, with one click and a confirmation signed with her key.
    page.get_by_role("link", name="Sharing", exact=True).click()
    page.locator(f"#grant-{grant.pk}").get_by_role("link", name="Revoke").click()
    page.get_by_label("Your key's passphrase (it stays in this browser)").fill(KEY_PASSPHRASE)
    page.get_by_role("button", name="Yes, revoke access").click()
    expect(page.get_by_role("status")).to_contain_text("Access revoked", timeout=30_000)
    expect(page.locator(f"#grant-{grant.pk}")).to_contain_text("Revoked")

    # The clinician's next read is denied, and the patient sees the denied attempt.
    assert _fhir_read(page, base, token, observation) == 404
    page.get_by_role("link", name="Who saw my data").click()
    denied = page.locator("tr.denied", has_text="dr_carol (Clinician)")
    expect(denied.first).to_contain_text("Denied")

    assert csp_violations == []
