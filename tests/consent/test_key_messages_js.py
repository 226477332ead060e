"""The registrations and rotations the browser builds are, byte for byte, what the server and the contract hash.

node runs portal/static_src/key_messages.mjs, the module the key bundle is built from (the bundle test holds the
committed bundle to a fresh build of it), over the template the key page serves; the digest viem computes must
equal the server's and the contract's, and the signature the page would send must register the key on chain.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess

import pytest

from consent.key_chain import account_of
from consent.keys import registration_typed_data
from ledger import signing
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.django_db

SCRIPT = REPO_ROOT / "portal" / "static_src" / "key_messages_hash.mjs"


def _browser(template: dict[str, object], key: bytes, previous: str | None) -> dict[str, str]:
    node = shutil.which("node")
    if node is None or not (REPO_ROOT / "node_modules" / "viem").exists():
        pytest.skip("node and the npm packages are needed: npm install")
    request = {
        "template": signing.typed_data_json(template),  # what the key page puts in the page
        "key": signing.patient_address(private_key=key),
        "previous": previous,
        "private_key": "0x" + key.hex(),
    }
    out = subprocess.run(
        [node, str(SCRIPT)], input=json.dumps(request), capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout)


def _contract_digest(deployed, account: bytes, key: str, previous: str) -> bytes:  # type: ignore[no-untyped-def]
    functions = deployed.contract.functions
    struct_hash = bytes(functions.hashKeyRegistration(account, key, previous).call())
    return signing.keccak(b"\x19\x01" + bytes(functions.domainSeparator().call()) + struct_hash)


def test_a_first_registration_built_in_the_browser_hashes_as_the_server_and_the_contract_do(patient, deployed):
    key = secrets.token_bytes(32)
    address = signing.patient_address(private_key=key)
    template = registration_typed_data(patient=patient, key=signing.ZERO_ADDRESS)

    browser = _browser(template, key, None)
    server = registration_typed_data(patient=patient, key=address)

    digest = bytes.fromhex(browser["digest"][2:])
    assert digest == signing.typed_data_digest(server)
    assert digest == _contract_digest(deployed, account_of(patient), address, signing.ZERO_ADDRESS)
    assert browser["typed"] == json.loads(json.dumps(signing.typed_data_json(server)))
    # The signature the page sends registers the key in the contract itself.
    deployed.register_key(
        signing.KeyChange(
            account=account_of(patient),
            key=address,
            previous=signing.ZERO_ADDRESS,
            signature=signing.signature_parse(browser["signature"]),
        )
    )
    assert deployed.key_of(account_of(patient)) == address


def test_a_rotation_built_in_the_browser_hashes_as_the_server_and_the_contract_do(patient, deployed):
    old_key, new_key = secrets.token_bytes(32), secrets.token_bytes(32)
    old, new = signing.patient_address(private_key=old_key), signing.patient_address(private_key=new_key)
    template = registration_typed_data(patient=patient, key=signing.ZERO_ADDRESS, previous=old)

    as_new = _browser(template, new_key, old)
    server = registration_typed_data(patient=patient, key=new, previous=old)

    digest = bytes.fromhex(as_new["digest"][2:])
    assert digest == signing.typed_data_digest(server)
    assert digest == _contract_digest(deployed, account_of(patient), new, old)
    assert signing.recover_signer(server, signing.signature_parse(as_new["signature"])) == new
    # The old key signs the same message (keys.js signs the one typed data with both keys).
    first = registration_typed_data(patient=patient, key=signing.ZERO_ADDRESS)
    registered = _browser(first, old_key, None)
    deployed.register_key(
        signing.KeyChange(
            account=account_of(patient),
            key=old,
            previous=signing.ZERO_ADDRESS,
            signature=signing.signature_parse(registered["signature"]),
        )
    )
    deployed.register_key(
        signing.KeyChange(
            account=account_of(patient),
            key=new,
            previous=old,
            signature=signing.signature_parse(as_new["signature"]),
            previous_signature=signing.typed_data_sign(server, private_key=old_key),
        )
    )
    assert deployed.key_of(account_of(patient)) == new


def test_the_cancellation_of_a_reset_hashes_as_the_contract_does(patient, deployed):
    pending = signing.patient_address(private_key=secrets.token_bytes(32))
    typed = signing.key_reset_cancel_typed_data(
        account=account_of(patient), key=pending, chain_id=deployed.chain_id, verifying_contract=deployed.address
    )
    functions = deployed.contract.functions
    struct_hash = signing.keccak(
        bytes(functions.KEY_RESET_CANCEL_TYPEHASH().call())
        + account_of(patient)
        + bytes(12)
        + bytes.fromhex(pending[2:])
    )
    on_chain = signing.keccak(b"\x19\x01" + bytes(functions.domainSeparator().call()) + struct_hash)

    assert signing.typed_data_digest(typed) == on_chain
    assert bytes(functions.KEY_REGISTRATION_TYPEHASH().call()) == signing.KEY_REGISTRATION_TYPEHASH
