"""Rebuild the blind index of every record (or one) from its current versions, with a progress bar.

Run it after a search parameter is added to records.fhir.search_parameters: resources stored
before then carry no tokens for it. Each record is decrypted and reindexed in its own
transaction through consent.gate.record_index_rebuild, which logs it.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from consent.gate import record_index_rebuild
from records.models import Patient


class Command(BaseCommand):
    help = "Rebuild the blind search index from the stored data (after a search parameter was added)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patient", help="only this record (records.Patient id, a UUID)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")

    def handle(self, *args: Any, **options: Any) -> None:
        records = Patient.objects.filter(erased_at__isnull=True).order_by("created_at", "pk")
        if options["patient"]:
            try:
                records = records.filter(pk=uuid.UUID(options["patient"]))
            except ValueError as exc:
                raise CommandError(f"not a record id: {options['patient']}") from exc
            if not records.exists():
                raise CommandError(f"no patient record {options['patient']} (or it was erased)")
        ids = list(records.values_list("pk", flat=True))
        tokens = 0
        progress = tqdm(ids, unit="record", desc="blind index", file=sys.stderr, disable=options["no_progress"])
        for pk in progress:
            tokens += record_index_rebuild(patient=Patient(pk=pk))
        self.stdout.write(f"reindexed {len(ids)} record(s): {tokens} index tokens")
