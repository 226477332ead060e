"""The patient's key in a real browser: create it, sign a grant, revoke it, recover it on a fresh profile, rotate.

Every request body of these tests is recorded: none carries the private key, the recovery phrase or the
passphrase. The chain is the in-process EVM.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from consent.key_chain import account_of
from consent.models import Grant, GrantStatus, KeyKind, KeyRegistration, KeyReset, KeyResetStatus
from consent.services import chain_grant
from ledger import signing
from ledger.outbox import outbox_relay
from records.models import Patient
from tests.patient_device import legacy_server_key

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
PASSPHRASE = "a long passphrase for this browser"


def _record_bodies(page: Page, bodies: list[str]) -> None:
    page.on("request", lambda request: bodies.append(request.post_data or ""))


def _sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your dashboard")).to_be_visible()


def _confirm_phrase(page: Page) -> list[str]:
    panel = page.locator("[data-phrase-panel]")
    expect(panel).to_be_visible(timeout=30_000)
    words = panel.locator("[data-phrase-words] li").all_inner_texts()
    assert len(words) == 24
    for i in (0, 1):
        label = panel.locator(f"[data-check-label-{i}]").inner_text()
        page.locator(f"#check-{i}").fill(words[int(label.split()[-1]) - 1])
    page.get_by_role("button", name="I wrote it down: register my key").click()
    expect(page.locator("[data-key-done]")).to_be_visible(timeout=30_000)
    return words


def _choose(page: Page, base: str) -> None:
    """The guided sharing form up to its review: the clinician from the directory, then what in plain words."""
    page.goto(f"{base}/sharing/new/")
    page.get_by_role("link", name="Choose dr_carol").click()
    page.get_by_label("All measurements and test results").check()
    page.get_by_role("button", name="Next: check what you share").click()


def _grant(page: Page, base: str) -> None:
    _choose(page, base)
    expect(page.get_by_role("heading", name="What you are signing, in plain words")).to_be_visible()
    expect(page.locator("[data-signed-message]")).to_contain_text("dr_carol")
    page.get_by_label("Your key's passphrase (it stays in this browser)").fill(PASSPHRASE)
    page.get_by_role("button", name="Sign and grant access").click()
    expect(page.get_by_role("status")).to_contain_text("Access granted", timeout=30_000)


def _relay() -> None:
    for _ in range(3):
        outbox_relay()


def _key_of(words: list[str]) -> str:
    """The key a 24-word phrase stands for: its 256 bits of BIP-39 entropy (keys.js uses it as the key)."""
    from eth_account.hdaccount.mnemonic import Language, Mnemonic

    wordlist = Mnemonic(Language.ENGLISH).wordlist
    bits = "".join(format(wordlist.index(word), "011b") for word in words)
    return int(bits[:256], 2).to_bytes(32, "big").hex()


def test_create_sign_revoke_recover_and_rotate_without_the_key_ever_leaving_the_browser(
    live_server, browser: Browser, shot_on_failure, csp_violations, deployed, patient, clinician
) -> None:  # type: ignore[no-untyped-def]
    Patient.objects.filter(pk=patient.pk).update(wallet_address="", wallet_ciphertext=None)  # a new patient
    page: Page = shot_on_failure
    base = live_server.url
    bodies: list[str] = []
    _record_bodies(page, bodies)
    _sign_in(page, base)

    # Create the key: passphrase, phrase shown once and checked by two words, registered by its signature.
    page.goto(f"{base}/keys/")
    page.get_by_label("A passphrase for this browser (at least 10 characters)").fill(PASSPHRASE)
    page.get_by_label("The passphrase again").fill(PASSPHRASE)
    page.get_by_label("Your account password (asked again for this)").fill(PASSWORD)
    page.get_by_role("button", name="Create my key").click()
    words = _confirm_phrase(page)
    key_hex = _key_of(words)
    address = Patient.objects.get(pk=patient.pk).wallet_address
    assert address == signing.patient_address(private_key=bytes.fromhex(key_hex))
    assert KeyRegistration.objects.get(patient=patient).kind == KeyKind.CREATED

    # Sign a grant after reading it in plain words; revoke it with a signature too.
    _grant(page, base)
    grant = Grant.objects.get()
    assert grant.patient_address == address
    page.locator(f"#grant-{grant.pk}").get_by_role("link", name="Revoke").click()
    page.get_by_label("Your key's passphrase (it stays in this browser)").fill(PASSPHRASE)
    page.get_by_role("button", name="Yes, revoke access").click()
    expect(page.get_by_role("status")).to_contain_text("Access revoked", timeout=30_000)
    assert Grant.objects.get().status == GrantStatus.REVOKED

    # A fresh profile: no key here until the phrase recovers it; then it signs.
    fresh_context = browser.new_context()
    fresh = fresh_context.new_page()
    _record_bodies(fresh, bodies)
    _sign_in(fresh, base)
    fresh.goto(f"{base}/keys/")
    expect(fresh.locator("[data-key-missing]")).to_be_visible()
    fresh.get_by_label("Your recovery phrase (24 words)").fill(" ".join(words))
    fresh.locator("#recover-passphrase").fill(PASSPHRASE)
    fresh.locator("#recover-passphrase-again").fill(PASSPHRASE)
    fresh.get_by_role("button", name="Recover my key").click()
    expect(fresh.locator("[data-key-done]")).to_be_visible(timeout=30_000)
    _grant(fresh, base)
    assert Grant.objects.filter(status=GrantStatus.PENDING).count() == 1

    # Rotate: a new key, registered with the old key's signature too.
    fresh.goto(f"{base}/keys/")
    fresh.get_by_label("Your current passphrase").fill(PASSPHRASE)
    fresh.locator("#rotate-passphrase").fill(PASSPHRASE)
    fresh.locator("#rotate-passphrase-again").fill(PASSPHRASE)
    fresh.get_by_role("button", name="Replace my key").click()
    new_words = _confirm_phrase(fresh)
    assert KeyRegistration.objects.filter(patient=patient).order_by("-id").first().kind == KeyKind.ROTATED  # type: ignore[union-attr]
    new_address = signing.patient_address(private_key=bytes.fromhex(_key_of(new_words)))
    assert Patient.objects.get(pk=patient.pk).wallet_address == new_address
    # On chain: the registration and the rotation her browser signed, relayed; the chain now names the new key.
    _relay()
    account = account_of(patient)
    assert deployed.key_of(account) == new_address
    registered = deployed.contract.events.KeyRegistered.get_logs(from_block=0)
    assert [(e["args"]["key"], e["args"]["previous"], e["args"]["reset"]) for e in registered] == [
        (address, signing.ZERO_ADDRESS, False),
        (new_address, address, False),
    ]
    # The new key signs in this browser, and the chain records its grant.
    _grant(fresh, base)
    _relay()
    newest = Grant.objects.order_by("-created_at").first()
    assert newest is not None
    assert newest.patient_address == new_address
    assert Grant.objects.get(pk=newest.pk).status == GrantStatus.RECORDED
    fresh_context.close()

    secrets_seen = [
        key_hex,
        _key_of(new_words),
        " ".join(words),
        "+".join(words),
        words[0] + "%20" + words[1],
        PASSPHRASE,
    ]
    secrets_seen.append(PASSPHRASE.replace(" ", "+"))
    assert (
        sum("signature=0x" in body for body in bodies) >= 6
    )  # registration, grant, revocation, grant, rotation, grant
    for body in bodies:
        for secret in secrets_seen:
            assert secret.lower() not in body.lower()
    assert csp_violations == []


def test_take_your_key_then_erase_with_revocations_signed_in_the_browser(
    live_server, shot_on_failure, csp_violations, deployed, patient, clinician
) -> None:  # type: ignore[no-untyped-def]
    from tests.portal.conftest import PASSWORD as ACCOUNT_PASSWORD

    assert ACCOUNT_PASSWORD == PASSWORD
    legacy_server_key(patient)  # a record from before self-custody: the operator holds a copy of her key
    page: Page = shot_on_failure
    base = live_server.url
    bodies: list[str] = []
    _record_bodies(page, bodies)
    _sign_in(page, base)

    page.goto(f"{base}/sharing/")
    expect(page.get_by_role("note")).to_contain_text("The operator of this service holds your signing key")
    page.goto(f"{base}/keys/")
    page.get_by_label("A passphrase for this browser (at least 10 characters)").fill(PASSPHRASE)
    page.get_by_label("The passphrase again").fill(PASSPHRASE)
    page.get_by_label("Your account password (asked again for this)").fill(PASSWORD)
    page.get_by_role("button", name="Take my key").click()
    words = _confirm_phrase(page)
    record = Patient.objects.get(pk=patient.pk)
    assert record.wallet_ciphertext is None
    assert record.wallet_address == signing.patient_address(private_key=bytes.fromhex(_key_of(words)))

    _grant(page, base)
    page.goto(f"{base}/erase/")
    page.get_by_label("Type").fill("erase my record")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_label("Your key's passphrase (it stays in this browser)").fill(PASSPHRASE)
    page.get_by_role("button", name="Erase my data for good").click()
    expect(page.get_by_role("heading", level=1)).not_to_have_text("Erase my data", timeout=30_000)

    assert Patient.objects.get(pk=patient.pk).is_erased is True
    assert Grant.objects.get().status == GrantStatus.REVOKED
    for body in bodies:
        assert " ".join(words) not in body
        assert PASSPHRASE.replace(" ", "+") not in body
    assert csp_violations == []


def test_an_external_wallet_registers_and_signs_the_same_typed_data(
    live_server, shot_on_failure, csp_violations, deployed, patient, clinician
) -> None:  # type: ignore[no-untyped-def]
    """An EIP-1193 provider stood in for by eth_account: eth_requestAccounts and eth_signTypedData_v4 only."""
    import json
    import secrets

    from eth_account import Account
    from eth_account.messages import encode_typed_data

    Patient.objects.filter(pk=patient.pk).update(wallet_address="", wallet_ciphertext=None)
    key = secrets.token_bytes(32)
    address = signing.patient_address(private_key=key)
    page: Page = shot_on_failure
    base = live_server.url

    def wallet_sign(typed_json: str) -> str:
        signed = Account.sign_message(encode_typed_data(full_message=json.loads(typed_json)), private_key=key)
        return "0x" + bytes(signed.signature).hex()

    page.expose_function("hlWalletSign", wallet_sign)
    page.add_init_script(
        "window.ethereum = { request: async ({ method, params }) => {"
        f" if (method === 'eth_requestAccounts') return ['{address}'];"
        " if (method === 'eth_signTypedData_v4') return window.hlWalletSign(params[1]);"
        " throw new Error('unsupported ' + method); } };"
    )
    _sign_in(page, base)

    page.goto(f"{base}/keys/")
    page.get_by_label("Your account password (asked again for this)").fill(PASSWORD)
    page.get_by_role("button", name="Use my browser wallet (EIP-1193) instead").click()
    expect(page.locator("[data-key-done]")).to_be_visible(timeout=30_000)
    assert Patient.objects.get(pk=patient.pk).wallet_address == address

    _choose(page, base)
    page.get_by_role("button", name="Sign with my browser wallet instead").click()
    expect(page.get_by_role("status")).to_contain_text("Access granted", timeout=30_000)

    assert Grant.objects.get().patient_address == address
    assert csp_violations == []


def test_a_lost_key_reset_is_asked_for_in_the_browser_and_cancelled_by_the_key_that_was_not_lost(
    live_server, browser: Browser, shot_on_failure, csp_violations, deployed, patient, clinician
) -> None:  # type: ignore[no-untyped-def]
    from consent.key_reset import key_reset_approve

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
    address = Patient.objects.get(pk=patient.pk).wallet_address
    _relay()

    # Someone with her session but neither her device nor her phrase (or she, on a new device) asks for a reset.
    other_context = browser.new_context()
    other = other_context.new_page()
    _record_bodies(other, bodies)
    _sign_in(other, base)
    other.goto(f"{base}/keys/")
    other.locator("#reset-passphrase").fill(PASSPHRASE)
    other.locator("#reset-passphrase-again").fill(PASSPHRASE)
    other.locator("#reset-password").fill(PASSWORD)
    other.get_by_role("button", name="Ask for a new key").click()
    reset_words = _confirm_phrase_only(other)
    expect(other.locator("[data-key-reset-status]")).to_contain_text("must check that it is you", timeout=30_000)
    reset = KeyReset.objects.get(patient=patient)
    assert reset.address == signing.patient_address(private_key=bytes.fromhex(_key_of(reset_words)))
    assert Patient.objects.get(pk=patient.pk).wallet_address == address  # nothing changed
    other_context.close()

    key_reset_approve(reset=reset, actor="system:key_reset:test")
    _relay()
    assert deployed.pending_key_reset(account_of(patient))[0] == reset.address

    # The browser that still holds her key cancels it, on chain too.
    page.goto(f"{base}/keys/")
    expect(page.locator("[data-key-reset-status]")).to_contain_text("approved")
    page.locator("#cancel-reset-passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Cancel this reset").click()
    expect(page.locator("form[data-key-action=reset]")).to_be_visible(timeout=30_000)
    _relay()

    assert KeyReset.objects.get(pk=reset.pk).status == KeyResetStatus.CANCELLED
    assert deployed.pending_key_reset(account_of(patient)) == (signing.ZERO_ADDRESS, 0)
    assert deployed.key_of(account_of(patient)) == address
    secrets_seen = [_key_of(words), _key_of(reset_words), " ".join(words), " ".join(reset_words), PASSPHRASE]
    secrets_seen.append(PASSPHRASE.replace(" ", "+"))
    assert sum("signature=0x" in body for body in bodies) == 3  # registration, reset request, cancellation
    for body in bodies:
        for secret in secrets_seen:
            assert secret.lower() not in body.lower()
    assert csp_violations == []


def _confirm_phrase_only(page: Page) -> list[str]:
    """The phrase panel of a reset: shown once and checked; the page then reloads to say where the reset stands."""
    panel = page.locator("[data-phrase-panel]")
    expect(panel).to_be_visible(timeout=30_000)
    words = panel.locator("[data-phrase-words] li").all_inner_texts()
    assert len(words) == 24
    for i in (0, 1):
        label = panel.locator(f"[data-check-label-{i}]").inner_text()
        page.locator(f"#check-{i}").fill(words[int(label.split()[-1]) - 1])
    page.get_by_role("button", name="I wrote it down: register my key").click()
    return words


def test_a_key_sealed_under_a_passkey_prf_signs_without_a_passphrase(
    live_server, shot_on_failure, csp_violations, deployed, patient, clinician
) -> None:  # type: ignore[no-untyped-def]
    Patient.objects.filter(pk=patient.pk).update(wallet_address="", wallet_ciphertext=None)  # a new patient
    page: Page = shot_on_failure
    # A platform authenticator with the PRF extension, as Chromium's WebAuthn test API provides one.
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "hasPrf": True,
            }
        },
    )
    base = live_server.url.replace("127.0.0.1", "localhost")  # WebAuthn needs a domain for its relying party
    bodies: list[str] = []
    _record_bodies(page, bodies)
    _sign_in(page, base)

    page.goto(f"{base}/keys/")
    page.get_by_label("Protect it with a passkey instead of a passphrase", exact=False).check()
    expect(page.locator("#new-passphrase")).to_be_hidden()
    page.get_by_label("Your account password (asked again for this)").fill(PASSWORD)
    page.get_by_role("button", name="Create my key").click()
    words = _confirm_phrase(page)
    address = Patient.objects.get(pk=patient.pk).wallet_address
    assert address == signing.patient_address(private_key=bytes.fromhex(_key_of(words)))

    _choose(page, base)
    expect(page.get_by_role("heading", name="What you are signing, in plain words")).to_be_visible()
    expect(page.locator("#key-passphrase")).to_be_hidden()  # the passkey unlocks the key, no passphrase
    page.get_by_role("button", name="Sign and grant access").click()
    expect(page.get_by_role("status")).to_contain_text("Access granted", timeout=30_000)
    grant = Grant.objects.get()
    assert grant.patient_address == address
    typed = signing.grant_typed_data(
        chain_grant(grant), chain_id=deployed.chain_id, verifying_contract=deployed.address
    )
    assert signing.recover_signer(typed, signing.signature_parse(grant.signature)) == address
    for body in bodies:
        assert _key_of(words) not in body.lower()
        assert " ".join(words) not in body
    assert csp_violations == []
