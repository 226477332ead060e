"""Print (or write to docs/diagnostic-models.md) every diagnostic model's card, derived from its declaration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from diagnostics.inference import list_models
from diagnostics.inference.cards import models_document

DOC_PATH = Path(settings.BASE_DIR) / "docs" / "diagnostic-models.md"


class Command(BaseCommand):
    help = "Print every diagnostic model's card (population, inputs, units, accepted ranges, value sets)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH.name} under docs/")

    def handle(self, *args: Any, **options: Any) -> None:
        text = models_document(list_models())
        if options["write"]:
            DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
            DOC_PATH.write_text(text, encoding="utf-8")
            self.stdout.write(f"wrote {DOC_PATH}")
        else:
            self.stdout.write(text, ending="")
