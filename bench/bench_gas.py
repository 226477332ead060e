"""Gas of ConsentRegistry on anvil, read from receipts: grant, revocation, batched grants, log anchoring, and
the key registry (registration, rotation). Every grant's key is registered first, as the contract requires.

Starts its own anvil (no state file) on a free port and stops it at the end, even on error. Gas varies a
little with the zero bytes in random salts and signatures, so each single-transaction figure is the worst
of several runs.
"""

from __future__ import annotations

import secrets

from bench.harness import Figure
from ledger import signing
from ledger.client import ChainClient
from ledger.devnode import anvil_running
from ledger.services import deployment_create

RUNS = 10
BATCH = 20
ANCHOR_ENTRIES = 4096
PUBLISHED_GRANT_GAS = 78_000  # the published design of this kind the issue compares against


def _signed_grant(client: ChainClient, now: int) -> tuple[signing.Grant, signing.Signature, bytes]:
    key = secrets.token_bytes(32)
    scope = signing.canonical_scope_bytes({"actions": ["read"], "purpose": "TREAT", "types": ["Observation"]})
    grant = signing.Grant(
        patient=signing.patient_address(private_key=key),
        grantee="0x" + secrets.token_bytes(20).hex(),
        scope_commitment=signing.scope_commitment(commitment_salt=signing.new_salt(), scope=scope),
        not_before=now,
        not_after=now + 365 * 24 * 3600,
        salt=signing.new_salt(),
    )
    signature = signing.grant_sign(grant, private_key=key, chain_id=client.chain_id, verifying_contract=client.address)
    return grant, signature, key


def _register(client: ChainClient, key: bytes, *, previous_key: bytes | None = None, account: bytes = b"") -> object:
    """Register a key in the contract's key registry (or rotate to it, co-signed by the previous key)."""
    account = account or secrets.token_bytes(32)
    address = signing.patient_address(private_key=key)
    previous = signing.patient_address(private_key=previous_key) if previous_key else signing.ZERO_ADDRESS
    typed = signing.registration_typed_data(
        account=account, key=address, previous=previous, chain_id=client.chain_id, verifying_contract=client.address
    )
    change = signing.KeyChange(
        account=account,
        key=address,
        previous=previous,
        signature=signing.typed_data_sign(typed, private_key=key),
        previous_signature=signing.typed_data_sign(typed, private_key=previous_key) if previous_key else None,
    )
    return client.register_key(change)


def _gas(ref: object) -> int:
    gas = getattr(ref, "gas_used", None)
    assert isinstance(gas, int)
    return gas


def run() -> list[Figure]:
    with anvil_running() as url:
        client = ChainClient.for_url(url, operator_key=secrets.token_bytes(32))
        deployment = deployment_create(client=client)
        deploy_gas = _gas(client.wait_for_receipt(deployment.deploy_tx))
        _, now = client.latest_block()

        grant_gas: list[int] = []
        revoke_gas: list[int] = []
        register_gas: list[int] = []
        rotate_gas: list[int] = []
        for _ in range(RUNS):
            grant, signature, key = _signed_grant(client, now)
            account = secrets.token_bytes(32)
            register_gas.append(_gas(_register(client, key, account=account)))
            grant_gas.append(_gas(client.record_grant(grant, signature)))
            revocation = signing.revoke_sign(
                signing.grant_id(grant), private_key=key, chain_id=client.chain_id, verifying_contract=client.address
            )
            revoke_gas.append(_gas(client.revoke(grant, revocation)))
            rotate_gas.append(_gas(_register(client, secrets.token_bytes(32), previous_key=key, account=account)))

        batch_gas: list[float] = []
        for _ in range(3):
            batch = [_signed_grant(client, now) for _ in range(BATCH)]
            for _, _, key in batch:
                _register(client, key)
            batch_gas.append(_gas(client.record_grants([(g, sig) for g, sig, _ in batch])) / BATCH)

        anchor_gas: list[float] = []
        for index in range(1, RUNS + 1):
            ref = client.anchor(secrets.token_bytes(32), index * ANCHOR_ENTRIES)
            anchor_gas.append(_gas(ref) / ANCHOR_ENTRIES)

    grant, revoke, batched, anchor = max(grant_gas), max(revoke_gas), max(batch_gas), max(anchor_gas)
    return [
        Figure("gas grant (patient-signed, relayed)", grant, "gas", "<= 55000", grant <= 55_000),
        Figure("gas revoke (patient-signed)", revoke, "gas", "<= 36000", revoke <= 36_000),
        Figure(f"gas grant in batch of {BATCH} (per grant)", batched, "gas", "<= 36000", batched <= 36_000),
        Figure(f"gas anchor per logged access at {ANCHOR_ENTRIES}", anchor, "gas", "<= 10", anchor <= 10),
        Figure("gas anchor transaction", anchor * ANCHOR_ENTRIES, "gas", "<= 40960", anchor * ANCHOR_ENTRIES <= 40_960),
        Figure(
            "gas grant ratio to the published design (78,000)",
            grant / PUBLISHED_GRANT_GAS,
            "ratio",
            "< 1",
            grant < PUBLISHED_GRANT_GAS,
        ),
        Figure("gas deploy", deploy_gas, "gas"),
        Figure("gas key registration (patient-signed, relayed)", max(register_gas), "gas"),
        Figure("gas key rotation (signed by the old and the new key)", max(rotate_gas), "gas"),
    ]
