"""`manage.py reconcile_chain`: compare grants, registered keys and access-log anchors with the chain, repair what
is safe."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.reconcile import chain_reconcile
from healthledger.errors import ChainError, ChainUnavailable

# 0: no difference remains after repairs; 1: some remain; 2: the chain could not be asked.
DIFFERENCES_REMAIN = 1
CHAIN_UNREACHABLE = 2


class Command(BaseCommand):
    help = (
        "Compare the database with the chain (grants, revocations, registered keys, access-log anchors), repair "
        "what can be repaired, and print every difference and every key still pending. Exits 0 when no "
        "difference remains, 1 otherwise, 2 if the chain is down (unavailable, as a 503 would say)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="report only; repair nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = bool(options["dry_run"])
        try:
            report = chain_reconcile(dry_run=dry_run)
        except (ChainUnavailable, ChainError) as exc:
            raise CommandError(f"chain UNREACHABLE: {exc}", returncode=CHAIN_UNREACHABLE) from exc
        for difference in report.differences:
            self.stdout.write(difference.describe(dry_run=dry_run))
        for line in report.pending:
            self.stdout.write(line)
        self.stdout.write(report.summary())
        if report.remaining:
            raise CommandError(f"{len(report.remaining)} difference(s) remain", returncode=DIFFERENCES_REMAIN)
