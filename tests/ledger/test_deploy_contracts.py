"""`manage.py deploy_contracts` and the committed artifact."""

from __future__ import annotations

import io
import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

from healthledger.errors import ChainUnavailable
from ledger.client import ARTIFACT_PATH, ChainClient, chain_client
from ledger.models import Deployment

REPO = Path(__file__).resolve().parents[2]


def test_deploy_contracts_deploys_once_and_records_where(chain, db):
    out = io.StringIO()
    call_command("deploy_contracts", stdout=out)
    call_command("deploy_contracts", stdout=out)

    [deployment] = Deployment.objects.all()
    first, second = out.getvalue().splitlines()
    assert first.startswith(f"ConsentRegistry deployed at {deployment.address} on chain {chain.chain_id}")
    assert second.startswith(f"ConsentRegistry already deployed at {deployment.address}")
    assert (deployment.artifact_hash, deployment.operator) == (chain.artifact.hash, chain.operator.address)
    receipt = chain.w3.eth.get_transaction_receipt(deployment.deploy_tx)  # type: ignore[arg-type]
    assert (receipt["contractAddress"], receipt["blockNumber"]) == (deployment.address, deployment.block)
    assert chain_client().has_code(deployment.address) is True


def test_a_client_without_an_address_finds_the_recorded_deployment(chain, db):
    call_command("deploy_contracts", stdout=io.StringIO())
    fresh = ChainClient(w3=chain.w3, operator_key=secrets.token_bytes(32))

    assert fresh.address == Deployment.objects.get().address


def test_a_client_on_a_chain_without_a_deployment_says_so(chain, db):
    fresh = ChainClient(w3=chain.w3, operator_key=secrets.token_bytes(32))

    with pytest.raises(ChainUnavailable) as missing:
        _ = fresh.address

    assert str(missing.value) == "ConsentRegistry is not deployed on this chain: run manage.py deploy_contracts"


def test_a_recorded_deployment_whose_code_is_gone_is_deployed_again(chain, db):
    Deployment.objects.create(
        chain_id=chain.chain_id,
        address="0x" + "12" * 20,
        deploy_tx="0x" + "00" * 32,
        block=1,
        artifact_hash=chain.artifact.hash,
        operator=chain.operator.address,
    )

    call_command("deploy_contracts", stdout=io.StringIO())

    assert Deployment.objects.count() == 2
    assert chain_client().address == Deployment.objects.order_by("-id").first().address  # type: ignore[union-attr]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: cannot recompile the contract")
def test_the_committed_artifact_is_what_the_pinned_compiler_builds_from_the_source():
    fresh = subprocess.run(
        ["node", "ledger/contracts/compile.js", "--stdout"], cwd=REPO, capture_output=True, text=True, check=True
    )

    committed = json.loads(ARTIFACT_PATH.read_text())
    rebuilt = json.loads(fresh.stdout)
    assert rebuilt["bytecode"] == committed["bytecode"]
    assert rebuilt["deployedBytecode"] == committed["deployedBytecode"]
    assert rebuilt == committed
    assert committed["compiler"]["version"].startswith("0.8.37+")
    assert committed["compiler"]["settings"]["evmVersion"] == "cancun"
