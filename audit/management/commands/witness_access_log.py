"""`manage.py witness_access_log [--state FILE]`: prove the sealed log extends the last witnessed tree head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.witness import access_log_witness
from healthledger.errors import IntegrityFailure


class Command(BaseCommand):
    help = (
        "Check the sealed access log against the tree head this witness last accepted (an RFC 6962 consistency "
        "proof), then keep the new one in a file outside the database. Exits 1 when the log shrank or was rewritten."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--state", type=Path, default=None, help="the witness file (default AUDIT_WITNESS_FILE)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["state"] or Path(settings.AUDIT_WITNESS_FILE)
        try:
            result = access_log_witness(path=path)
        except IntegrityFailure as exc:
            raise CommandError(f"access log FAILED witnessing: {exc}", returncode=1) from exc
        head = result.current
        if result.previous is None:
            self.stdout.write(
                f"first witness: size {head.size}, root {head.root[:16]}…, checkpoint {head.checkpoint_id}"
            )
        else:
            self.stdout.write(
                f"consistent: size {result.previous.size} -> {head.size} "
                f"({result.proof_hashes} proof hashes), root {head.root[:16]}…, checkpoint {head.checkpoint_id}"
            )
        self.stdout.write(f"witness state: {path}")
