"""Reads of ledger state kept in the database."""

from __future__ import annotations

from ledger.models import Deployment


def deployment_current(*, chain_id: int, artifact_hash: str) -> Deployment | None:
    """The newest deployment of this exact artifact on this chain, if any."""
    return (
        Deployment.objects.filter(chain_id=chain_id, artifact_hash=artifact_hash).order_by("-created_at", "-id").first()
    )


def signing_domain() -> tuple[int, str]:
    """(chain id, contract address) that patient signatures bind to: the newest deployment of this artifact.

    Read from the database so a patient can sign while the chain node is down; the relay
    sends later to the same contract.
    """
    from ledger.client import load_artifact

    deployment = Deployment.objects.filter(artifact_hash=load_artifact().hash).order_by("-created_at", "-id").first()
    if deployment is None:
        from healthledger.errors import ChainUnavailable

        raise ChainUnavailable("ConsentRegistry is not deployed yet: run manage.py deploy_contracts")
    return deployment.chain_id, deployment.address
