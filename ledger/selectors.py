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


def outbox_status(*, ask_chain: bool = True) -> dict[str, object]:
    """The chain outbox's lag for operators: writes not yet confirmed, the oldest one's age, and the relayer's
    next nonce against the chain's (a chain that forgot blocks shows a relayer ahead of it).

    With `ask_chain`, the chain is asked for the relayer account's nonces (one short call; "unknown" if down).
    """
    from django.db.models import Min
    from django.utils import timezone

    from ledger.models import OutboxMessage, OutboxStatus, RelayerState

    now = timezone.now()
    open_rows = OutboxMessage.objects.filter(status__in=[OutboxStatus.PENDING, OutboxStatus.SENT])
    oldest = open_rows.aggregate(oldest=Min("created_at"))["oldest"]
    state = RelayerState.objects.filter(pk=1).first()
    status: dict[str, object] = {
        "pending": open_rows.filter(status=OutboxStatus.PENDING).count(),
        "sent_unconfirmed": open_rows.filter(status=OutboxStatus.SENT).count(),
        "failed": OutboxMessage.objects.filter(status=OutboxStatus.FAILED).count(),
        "oldest_open_s": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
        "relayer_next_nonce": state.next_nonce if state is not None else None,
    }
    if ask_chain:
        try:
            from ledger.client import chain_client

            client = chain_client()
            status["chain_nonce_mined"] = client.transaction_count("latest")
            status["chain_nonce_pending"] = client.transaction_count("pending")
        except Exception as exc:  # a status report shows a down chain, it does not fail
            status["chain_nonce_mined"] = f"unknown ({type(exc).__name__})"
    return status
