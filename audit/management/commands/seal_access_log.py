from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.services import access_log_seal


class Command(BaseCommand):
    help = "Seal committed, unsealed access-log entries into signed Merkle checkpoints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-entries", type=int, default=None, help="entries per checkpoint at most")

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoints = access_log_seal(max_entries=options["max_entries"])
        entries = sum(checkpoint.size for checkpoint in checkpoints)
        self.stdout.write(f"sealed {entries} entries into {len(checkpoints)} checkpoints")
