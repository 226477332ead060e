"""ledger.device: the signing device of clients that are not a browser holds its key as keys.js does.

The phrase is the key's BIP-39 entropy (keys.js phraseOf / keyOfPhrase, @scure/bip39), and what it signs
recovers its address from exactly the typed data the server hands out.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess

import pytest

from ledger import signing
from ledger.device import BadPhrase, Device, key_of_phrase, phrase_of
from tests.conftest import REPO_ROOT

# The BIP-39 test vector for 32 bytes of 0x7f (trezor/python-mnemonic vectors.json, english).
VECTOR_ENTROPY = bytes.fromhex("7f" * 32)
VECTOR_PHRASE = (
    "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful "
    "legal winner thank year wave sausage worth title"
)


def test_the_phrase_is_the_bip39_encoding_of_the_key_and_gives_it_back():
    assert phrase_of(VECTOR_ENTROPY) == VECTOR_PHRASE
    assert key_of_phrase(VECTOR_PHRASE) == VECTOR_ENTROPY
    key = secrets.token_bytes(32)
    assert key_of_phrase(phrase_of(key)) == key


def test_a_restored_device_has_the_same_address_whatever_the_spacing_and_case():
    device = Device.new()

    restored = Device.from_phrase("  " + device.phrase.upper().replace(" ", "\n  ") + "\n")

    assert restored.address == device.address


@pytest.mark.parametrize(
    "phrase",
    [
        "",
        VECTOR_PHRASE.rsplit(" ", 1)[0] + " legal",  # a wrong checksum word
        " ".join(VECTOR_PHRASE.split()[:12]),  # twelve words: not a key here
        VECTOR_PHRASE.replace("legal", "notaword", 1),
    ],
)
def test_anything_but_a_valid_24_word_phrase_is_refused(phrase):
    with pytest.raises(BadPhrase):
        Device.from_phrase(phrase)


def test_its_signature_recovers_its_address_from_the_typed_data_and_its_repr_shows_no_key():
    device = Device.new()
    typed = signing.registration_typed_data(
        account=signing.account_tag("record"),
        key=device.address,
        previous=signing.ZERO_ADDRESS,
        chain_id=31337,
        verifying_contract="0x" + "11" * 20,
    )

    signature = device.sign(typed)

    assert signing.recover_signer(typed, signing.signature_parse(signature)) == device.address
    assert repr(device) == f"Device(address={device.address})"


def test_the_phrase_is_the_one_the_browsers_bip39_library_makes_and_reads():
    node = shutil.which("node")
    if node is None or not (REPO_ROOT / "node_modules" / "@scure" / "bip39").exists():
        pytest.skip("node and the npm packages are needed: npm install")
    key = secrets.token_bytes(32)
    script = (
        'import { entropyToMnemonic, mnemonicToEntropy } from "@scure/bip39";'
        'import { wordlist } from "@scure/bip39/wordlists/english.js";'
        "const { key, phrase } = JSON.parse(process.argv[1]);"
        'const made = entropyToMnemonic(Buffer.from(key, "hex"), wordlist);'
        'const read = Buffer.from(mnemonicToEntropy(phrase, wordlist)).toString("hex");'
        "console.log(JSON.stringify({ made, read }));"
    )
    out = subprocess.run(
        [node, "--input-type=module", "-e", script, json.dumps({"key": key.hex(), "phrase": phrase_of(key)})],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert json.loads(out.stdout) == {"made": phrase_of(key), "read": key.hex()}
