"""Import FHIR files or folders: .json (a resource or a transaction/batch Bundle) and .ndjson (one resource a line).

Each document (a .json file, an .ndjson line) is imported all or nothing. Rejected
ones are listed with their reasons above one final summary line; the command exits
non-zero if anything was rejected.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from healthledger.errors import HealthLedgerError
from records.services import fhir_ingest

ACTOR = "system:import_fhir"
SUFFIXES = (".json", ".ndjson")


@dataclass(frozen=True)
class _Document:
    label: str
    payload: bytes


def _files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{raw}: no such file or folder")
    # Bulk-data exports put each type in its own file: patients first, so other lines find their record.
    return sorted(found, key=lambda p: (not p.name.startswith("Patient"), str(p)))


def _documents(path: Path) -> Iterator[_Document]:
    if path.suffix == ".ndjson":
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield _Document(f"{path}:{number}", line)
    else:
        yield _Document(str(path), path.read_bytes())


def _reasons(error: HealthLedgerError) -> str:
    parts = []
    for issue in error.issues[:5]:
        where = f" at {', '.join(issue.expression)}" if issue.expression else ""
        parts.append(f"{issue.code}: {issue.diagnostics}{where}")
    more = len(error.issues) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class Command(BaseCommand):
    help = "Import FHIR R4 JSON bundles, resources and ndjson files into the encrypted store."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="files or folders (.json, .ndjson)")

    def handle(self, *args: Any, **options: Any) -> None:
        files = _files(options["paths"])
        imported = 0
        patients: set[uuid.UUID] = set()
        rejected: list[str] = []
        total_bytes = sum(p.stat().st_size for p in files)
        with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="importing", file=sys.stderr) as bar:
            for path in files:
                for document in _documents(path):
                    try:
                        result = fhir_ingest(payload=document.payload, actor=ACTOR)
                    except HealthLedgerError as error:
                        rejected.append(f"rejected {document.label}: {_reasons(error)}")
                    else:
                        imported += result.resources
                        patients.update(result.patients)
                    bar.update(len(document.payload))
        for line in rejected:
            self.stdout.write(line)
        noun = "patient" if len(patients) == 1 else "patients"
        self.stdout.write(f"imported {imported} resources for {len(patients)} {noun}, {len(rejected)} rejected")
        if rejected:
            raise SystemExit(1)
