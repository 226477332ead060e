"""The seam turns every backend's failures into the project's errors."""

from __future__ import annotations

import json
import secrets

import pytest

from healthledger.errors import ChainError, ChainUnavailable
from ledger import signing
from ledger.client import ChainClient, ContractReverted, chain_client, chain_client_reset, chain_health
from ledger.devnode import ANVIL_BINARY, anvil_running, free_port
from tests.ledger.conftest import register_key


@pytest.fixture
def dead_node(settings):  # type: ignore[no-untyped-def]
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"
    chain_client_reset()
    yield
    chain_client_reset()


def test_a_node_that_is_down_is_chain_unavailable(dead_node):
    with pytest.raises(ChainUnavailable) as down:
        chain_client().latest_block()

    assert str(down.value) == "chain node unavailable (ConnectionError)"
    assert down.value.status == 503


def test_chain_health_reports_a_down_node_by_error_type_only(dead_node):
    assert chain_health() == "down (ChainUnavailable)"


def test_chain_health_reports_a_live_node_as_up(chain):
    assert chain_health() == "up"


def test_no_chain_configured_is_chain_unavailable(settings):
    settings.CHAIN_RPC_URL = ""
    settings.CHAIN_BACKEND = "rpc"
    chain_client_reset()

    with pytest.raises(ChainUnavailable) as missing:
        chain_client()

    assert str(missing.value) == "no chain configured: set CHAIN_RPC_URL (or CHAIN_BACKEND=tester)"


def test_the_operator_key_comes_from_the_environment_when_given(settings):
    settings.HEALTHLEDGER_CHAIN_OPERATOR_KEY = "0x" + "11" * 32
    settings.CHAIN_BACKEND = "tester"
    settings.CHAIN_RPC_URL = ""
    chain_client_reset()

    assert chain_client().operator.address == signing.patient_address(private_key=bytes.fromhex("11" * 32))
    chain_client_reset()


def test_a_contract_revert_is_a_permanent_chain_error(chain, make_grant, mallory_key):
    grant = make_grant()
    bad = signing.grant_sign(grant, private_key=mallory_key, chain_id=chain.chain_id, verifying_contract=chain.address)

    with pytest.raises(ChainError) as refused:
        chain.record_grant(grant, bad)

    assert isinstance(refused.value, ContractReverted)
    assert (refused.value.permanent, refused.value.status) == (True, 502)


@pytest.mark.integration
@pytest.mark.skipif(not ANVIL_BINARY.exists(), reason="anvil is not installed (npm install)")
def test_anvil_reverts_become_the_same_errors_as_the_in_process_evm(db):
    with anvil_running() as url:
        client = ChainClient.for_url(url, operator_key=secrets.token_bytes(32))
        client.operator_fund_from_node(minimum_wei=10**18, amount_wei=10**19)
        client.deploy()
        key = secrets.token_bytes(32)
        register_key(client, key)
        _, now = client.latest_block()
        grant = signing.Grant(
            patient=signing.patient_address(private_key=key),
            grantee=signing.patient_address(private_key=secrets.token_bytes(32)),
            scope_commitment=signing.new_salt(),
            not_before=now,
            not_after=now + 3600,
            salt=signing.new_salt(),
        )
        signature = signing.grant_sign(grant, private_key=key, chain_id=31337, verifying_contract=client.address)
        client.record_grant(grant, signature)

        with pytest.raises(ContractReverted) as replayed:
            client.record_grant(grant, signature)
        with pytest.raises(ContractReverted) as not_operator:
            _stranger_anchor(url, client.address)

        assert client.chain_id == 31337
        assert replayed.value.reason == "GrantExists"
        assert str(replayed.value) == f"ConsentRegistry reverted: GrantExists(0x{signing.grant_id(grant).hex()})"
        assert not_operator.value.reason == "NotOperator"
        assert client.is_active(signing.grant_id(grant), grant.grantee, grant.scope_commitment) is True


def _stranger_anchor(url: str, address: str) -> None:
    stranger = ChainClient.for_url(url, operator_key=secrets.token_bytes(32))
    stranger.use(address)
    stranger.operator_fund_from_node(minimum_wei=10**18, amount_wei=10**19)
    stranger.anchor(b"\x01" * 32, 1)


def test_a_transaction_sent_without_waiting_can_be_awaited_and_counted_later(chain, make_grant, alice_key):
    grant = make_grant()
    signature = signing.grant_sign(
        grant, private_key=alice_key, chain_id=chain.chain_id, verifying_contract=chain.address
    )

    sent = chain.record_grant(grant, signature, wait=False)
    mined = chain.wait_for_receipt(sent.hash)
    chain.w3.provider.ethereum_tester.mine_blocks(2)  # type: ignore[attr-defined]

    assert (sent.block, sent.gas_used) == (None, None)
    assert mined.hash == sent.hash
    assert mined.block == chain.latest_block()[0] - 2
    assert chain.confirmations(sent.hash) == 3
    assert chain.confirmations("0x" + "ab" * 32) == 0


@pytest.mark.skipif(not ANVIL_BINARY.exists(), reason="anvil is not installed (npm install)")
def test_a_grant_check_on_a_node_is_one_request_the_chain_id_asked_once(db):
    with anvil_running() as url:
        client = ChainClient.for_url(url, operator_key=secrets.token_bytes(32))
        client.operator_fund_from_node(minimum_wei=10**18, amount_wei=10**19)
        client.deploy()
        sent: list[str] = []
        session = client.w3.provider._request_session_manager
        post = session.make_post_request

        def counted(uri, data, **kwargs):  # type: ignore[no-untyped-def]
            sent.append(json.loads(data)["method"])
            return post(uri, data, **kwargs)

        session.make_post_request = counted
        for _ in range(3):
            assert client.is_active(b"\x01" * 32, client.operator.address, b"\x02" * 32) is False
        client.latest_block()

        assert sent.count("eth_call") == 3
        assert sent.count("eth_chainId") <= 1  # cached: at most once, never once per call
