"""An in-process EVM (eth-tester) with ConsentRegistry deployed, and patient keys to sign with."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest

from ledger import signing
from ledger.client import ChainClient, chain_client, chain_client_reset

DAY = 24 * 3600


@pytest.fixture
def chain(settings) -> Iterator[ChainClient]:  # type: ignore[no-untyped-def]
    """A fresh in-process chain per test, the operator funded from the node, the contract deployed."""
    settings.CHAIN_RPC_URL = ""
    settings.CHAIN_BACKEND = "tester"
    chain_client_reset()
    client = chain_client()
    client.operator_fund_from_node(minimum_wei=10**18, amount_wei=10**20)
    client.deploy()
    yield client
    chain_client_reset()


@pytest.fixture
def alice_key() -> bytes:
    """The patient's per-patient pseudonymous signing key."""
    return secrets.token_bytes(32)


@pytest.fixture
def mallory_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def carol_address() -> str:
    """The granted clinician's address."""
    return signing.patient_address(private_key=secrets.token_bytes(32))


def chain_now(client: ChainClient) -> int:
    return client.latest_block()[1]


def travel_to(client: ChainClient, timestamp: int) -> None:
    """Make `timestamp` the latest block's time (what views see); the next transaction lands after it."""
    client.w3.provider.ethereum_tester.time_travel(timestamp + 1)  # type: ignore[attr-defined]
    assert chain_now(client) == timestamp


MakeGrant = Callable[..., signing.Grant]


def register_key(client: ChainClient, key: bytes, *, account: bytes | None = None) -> bytes:
    """Register a patient key in the contract's key registry (the key signs, the operator relays); the account."""
    account = account or secrets.token_bytes(32)
    address = signing.patient_address(private_key=key)
    typed = signing.registration_typed_data(
        account=account,
        key=address,
        previous=signing.ZERO_ADDRESS,
        chain_id=client.chain_id,
        verifying_contract=client.address,
    )
    change = signing.KeyChange(
        account=account,
        key=address,
        previous=signing.ZERO_ADDRESS,
        signature=signing.typed_data_sign(typed, private_key=key),
    )
    client.register_key(change)
    return account


@pytest.fixture
def make_grant(chain: ChainClient, alice_key: bytes, carol_address: str) -> MakeGrant:
    """Alice's grant to Carol, by default valid for a day from the chain's current time (her key registered)."""
    register_key(chain, alice_key)

    def make(
        *, not_before: int | None = None, not_after: int | None = None, grantee: str | None = None
    ) -> signing.Grant:
        now = chain_now(chain)
        start = now if not_before is None else not_before
        scope = signing.canonical_scope_bytes({"actions": ["read"], "purpose": "TREAT", "types": ["Observation"]})
        return signing.Grant(
            patient=signing.patient_address(private_key=alice_key),
            grantee=grantee or carol_address,
            scope_commitment=signing.scope_commitment(commitment_salt=signing.new_salt(), scope=scope),
            not_before=start,
            not_after=start + DAY if not_after is None else not_after,
            salt=signing.new_salt(),
        )

    return make


def sign(client: ChainClient, grant: signing.Grant, key: bytes) -> signing.Signature:
    return signing.grant_sign(grant, private_key=key, chain_id=client.chain_id, verifying_contract=client.address)


def sign_revoke(client: ChainClient, grant: signing.Grant, key: bytes) -> signing.Signature:
    return signing.revoke_sign(
        signing.grant_id(grant), private_key=key, chain_id=client.chain_id, verifying_contract=client.address
    )
