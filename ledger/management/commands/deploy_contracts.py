"""`manage.py deploy_contracts`: deploy ConsentRegistry to the configured chain and record its address."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from healthledger.errors import ChainError, ChainUnavailable
from ledger.services import deployment_create, deployment_ensure


class Command(BaseCommand):
    help = "Deploy the ConsentRegistry contract (unless this artifact is already deployed) and record the address."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="deploy a new instance even if one is recorded")
        parser.add_argument(
            "--no-dev-funding",
            action="store_true",
            help="never top up the operator from the node's first account (production nodes have none)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fund = not options["no_dev_funding"]
        try:
            if options["force"]:
                deployment, created = deployment_create(fund_from_node=fund), True
            else:
                deployment, created = deployment_ensure(fund_from_node=fund)
        except (ChainError, ChainUnavailable) as exc:
            raise CommandError(str(exc)) from exc
        verb = "deployed" if created else "already deployed"
        self.stdout.write(
            f"ConsentRegistry {verb} at {deployment.address} on chain {deployment.chain_id} "
            f"(block {deployment.block}, tx {deployment.deploy_tx})"
        )
