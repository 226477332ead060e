from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.chain_check import access_log_anchored_proof
from audit.leaves import entry_leaf_hash
from audit.models import AccessLogEntry
from audit.services import access_log_proof, verify_inclusion
from healthledger.errors import HealthLedgerError


class Command(BaseCommand):
    help = (
        "Print the Merkle inclusion proof of one access-log entry as JSON: into its signed checkpoint, "
        "or with --anchored into the root anchored on chain (verified only against the chain's root)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("entry_id", type=int)
        parser.add_argument("--anchored", action="store_true", help="prove into the root anchored on chain")

    def handle(self, *args: Any, **options: Any) -> None:
        entry = AccessLogEntry.objects.filter(pk=options["entry_id"]).first()
        if entry is None:
            raise CommandError(f"no access-log entry with id {options['entry_id']}")
        if options["anchored"]:
            anchored = access_log_anchored_proof(entry=entry)
            self.stdout.write(json.dumps(anchored.as_dict(), indent=2))
            return
        try:
            proof = access_log_proof(entry=entry)
        except HealthLedgerError as exc:
            raise CommandError(str(exc)) from exc
        leaf = entry_leaf_hash(entry)
        output = {**proof.as_dict(), "leaf_hash": leaf.hex(), "verified": verify_inclusion(leaf, proof)}
        self.stdout.write(json.dumps(output, indent=2))
