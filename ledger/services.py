"""Writes of ledger state: deploying the contract and recording where it lives."""

from __future__ import annotations

import logging

from ledger.client import ChainClient, chain_client
from ledger.models import Deployment
from ledger.selectors import deployment_current

logger = logging.getLogger(__name__)

# What a development node gives the operator when it cannot pay for a deployment (anvil, the in-process EVM).
DEV_FUNDING_MINIMUM_WEI = 10**18
DEV_FUNDING_AMOUNT_WEI = 100 * 10**18


def deployment_create(*, client: ChainClient | None = None, fund_from_node: bool = True) -> Deployment:
    """Deploy ConsentRegistry (operator = the client's operator account) and record the deployment."""
    client = client or chain_client()
    if fund_from_node:
        client.operator_fund_from_node(minimum_wei=DEV_FUNDING_MINIMUM_WEI, amount_wei=DEV_FUNDING_AMOUNT_WEI)
    deployed = client.deploy()
    assert deployed.tx.block is not None  # deploy() waits for the receipt
    return Deployment.objects.create(
        chain_id=client.chain_id,
        address=deployed.address,
        deploy_tx=deployed.tx.hash,
        block=deployed.tx.block,
        artifact_hash=client.artifact.hash,
        operator=client.operator.address,
    )


def deployment_ensure(*, client: ChainClient | None = None, fund_from_node: bool = True) -> tuple[Deployment, bool]:
    """The current deployment when its code is really on chain, else a new one. Returns (deployment, created).

    A recorded address without the code happens after a development chain was reset; deploying again
    is the only useful answer there.
    """
    client = client or chain_client()
    existing = deployment_current(chain_id=client.chain_id, artifact_hash=client.artifact.hash)
    if existing is not None and client.has_code(existing.address):
        client.use(existing.address)
        return existing, False
    if existing is not None:
        logger.warning(
            "recorded ConsentRegistry %s has no code on chain %s; deploying again", existing.address, existing.chain_id
        )
    return deployment_create(client=client, fund_from_node=fund_from_node), True
