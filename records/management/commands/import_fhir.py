"""Import FHIR files or folders into a record named explicitly: .json (a resource or a Bundle) and .ndjson.

The target is always explicit; ids in the files never choose it:

    import_fhir --patient <record id> [--user <username>] PATH...   into an existing record
    import_fhir --new [--user <username>] PATH...                   into new records

With --patient, every document goes into that record; a record that belongs to an
account is written only when --user names that account. With --new, each .json file
becomes a record of its own, and the lines of .ndjson files (a Bulk Data export, one
type a file) become one record per Patient line, other lines joining the record of
the patient they refer to in this run; --user (one file only) gives the new record to
an account that has none. --source labels the provider the files came from. A new
record holds no signing key: its patient creates hers in her browser when she first
signs in (the portal's "Your key" page), and nothing is signed in her name before.

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
from django.db import transaction
from tqdm import tqdm

from accounts.models import User
from healthledger.errors import HealthLedgerError, InvalidFHIR
from records.fhir import parse_document, patient_compartment
from records.ingest import Source
from records.models import Patient
from records.services import fhir_ingest, patient_create

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


def _account(username: str | None) -> User | None:
    if username is None:
        return None
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no account named {username!r}")
    return user


def _existing_target(record_id: str, user: User | None) -> Patient:
    try:
        patient = Patient.objects.filter(pk=uuid.UUID(record_id)).first()
    except ValueError:
        patient = None
    patient = patient or Patient.objects.filter(fhir_id=record_id).first()
    if patient is None:
        raise CommandError(f"no record {record_id!r} (give the record's id, or --new)")
    if patient.is_erased:
        raise CommandError(f"record {record_id} was erased; nothing can be added to it")
    if patient.user_id is not None and (user is None or user.pk != patient.user_id):
        raise CommandError(f"record {record_id} belongs to an account; name that account with --user to write into it")
    if patient.user_id is None and user is not None:
        raise CommandError(f"record {record_id} belongs to no account, not to {user.username!r}")
    return patient


class _NewRecords:
    """--new: a record per .json file, and per Patient of an ndjson export (found again by its id in this run)."""

    def __init__(self, user: User | None) -> None:
        self.user = user
        self.made = 0
        self.by_source_patient: dict[str, Patient] = {}

    def for_document(self, document: _Document, path: Path) -> tuple[Patient, str | None]:
        """The record this document goes into, and the source patient it was made for (None: made for a file)."""
        if path.suffix != ".ndjson":
            return self._create(), None
        scope = patient_compartment(parse_document(document.payload)).get(0)
        if scope is None:
            raise InvalidFHIR("the line refers to no patient")
        found = self.by_source_patient.get(scope)
        if found is None:
            found = self.by_source_patient[scope] = self._create()
        return found, scope

    def forget(self, scope: str | None) -> None:
        """The document that made a record was rejected: the record went with its transaction."""
        if scope is not None:
            self.by_source_patient.pop(scope, None)
        self.made -= 1

    def _create(self) -> Patient:
        if self.user is not None and self.made:
            raise CommandError("--user gives one account one record: these files would make several")
        if self.user is not None and Patient.objects.filter(user=self.user).exists():
            raise CommandError(f"account {self.user.username!r} has a record already: use --patient")
        self.made += 1
        return patient_create(user=self.user)


class Command(BaseCommand):
    help = "Import FHIR R4 JSON bundles, resources and ndjson files into a record named explicitly."

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--patient", metavar="RECORD", help="the record to import into (its id or FHIR id)")
        target.add_argument("--new", action="store_true", help="import into new records")
        parser.add_argument("--user", metavar="USERNAME", help="the account the record belongs to")
        parser.add_argument("--source", default="", help="a label for the provider the files came from")
        parser.add_argument("paths", nargs="+", help="files or folders (.json, .ndjson)")

    def handle(self, *args: Any, **options: Any) -> None:
        files = _files(options["paths"])
        user = _account(options["user"])
        given = _existing_target(options["patient"], user) if options["patient"] else None
        new_records = None if given is not None else _NewRecords(user)
        source = Source(label=options["source"][:100])
        imported = 0
        patients: set[uuid.UUID] = set()
        rejected: list[str] = []
        total_bytes = sum(p.stat().st_size for p in files)
        with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="importing", file=sys.stderr) as bar:
            for path in files:
                for document in _documents(path):
                    made: tuple[Patient, str | None] | None = None
                    try:
                        # A new record and its first document commit together, or neither does.
                        with transaction.atomic():
                            if given is None:
                                made = new_records.for_document(document, path)  # type: ignore[union-attr]
                            target = given or made[0]  # type: ignore[index]
                            result = fhir_ingest(payload=document.payload, actor=ACTOR, patient=target, source=source)
                    except HealthLedgerError as error:
                        if made is not None and made[0].pk not in patients:
                            new_records.forget(made[1])  # type: ignore[union-attr]
                        rejected.append(f"rejected {document.label}: {_reasons(error)}")
                    else:
                        imported += result.resources
                        patients.update(result.patients)
                    bar.update(len(document.payload))
        for line in rejected:
            self.stdout.write(line)
        noun = "record" if len(patients) == 1 else "records"
        self.stdout.write(f"imported {imported} resources into {len(patients)} {noun}, {len(rejected)} rejected")
        for patient_id in sorted(patients, key=str):
            self.stdout.write(f"record {patient_id}")
        if new_records is not None and new_records.made:
            self.stdout.write(
                "new records hold no signing key: each patient creates hers in her browser at first sign-in"
                " (Your key); nothing can be shared in her name until then"
            )
        if rejected:
            raise SystemExit(1)
