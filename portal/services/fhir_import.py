"""A patient imports a file of FHIR resources through records.services.fhir_ingest; refusals in plain words."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from accounts.models import User
from healthledger.errors import InvalidFHIR, OutcomeIssue
from records.fhir.jsonio import DuplicateKey, dumps_exact, loads_exact
from records.ingest import Source
from records.models import Patient
from records.services import IngestResult, fhir_ingest


@dataclass(frozen=True)
class ImportReport:
    created: int
    updated: int
    unchanged: int
    source: str = ""  # the label the patient gave the provider this file came from
    skipped: tuple[str, ...] = ()  # the problems of the entries left out, when the patient asked to skip them

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged


class ImportRejected(InvalidFHIR):
    """The file was refused as a whole; `problems` says what and where in plain words."""

    def __init__(self, message: str, problems: list[str], *, status: int = 400) -> None:
        super().__init__(message, status=status)
        self.problems = problems
        self.partial = False  # some entries pass: the patient may import those and leave the rest out


def ndjson_as_batch(payload: bytes) -> tuple[bytes, list[int]]:
    """An ndjson file (one resource per line, as FHIR bulk export writes) as a batch Bundle, and each entry's line."""
    entries: list[dict[str, object]] = []
    lines: list[int] = []
    problems: list[str] = []
    for number, raw in enumerate(payload.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            resource = loads_exact(raw)
        except orjson.JSONDecodeError:
            problems.append(f"Line {number}: this line is not valid JSON.")
            continue
        except DuplicateKey as error:
            problems.append(f"Line {number}: {str(error)[:1].upper()}{str(error)[1:]}.")
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            problems.append(f"Line {number}: this line is not a FHIR resource (no resourceType).")
            continue
        kind = resource["resourceType"]
        ident = resource.get("id")
        request = (
            {"method": "PUT", "url": f"{kind}/{ident}"} if isinstance(ident, str) else {"method": "POST", "url": kind}
        )
        entries.append({"resource": resource, "request": request})
        lines.append(number)
    if problems:
        raise ImportRejected("the file was not imported", problems[:200])
    if not entries:
        raise ImportRejected("the file was not imported", ["The file holds no resources."])
    # Decimals go on as they were written (1.50 stays 1.50), as the import of a Bundle keeps them.
    return dumps_exact({"resourceType": "Bundle", "type": "batch", "entry": entries}), lines


def _where_in_words(expression: str, lines: list[int] | None, kinds: dict[int, str]) -> str:
    """ "Bundle.entry[3].resource.status" as "Entry 4 (Observation), field status" (or "Line 4" for ndjson)."""
    if not expression.startswith("Bundle.entry["):
        return "The file" if not expression else f"The file, at {expression}"
    index_text, _, rest = expression[len("Bundle.entry[") :].partition("]")
    if not index_text.isdigit():
        return f"The file, at {expression}"
    index = int(index_text)
    place = f"Line {lines[index]}" if lines is not None and index < len(lines) else f"Entry {index + 1}"
    kind = kinds.get(index)
    if kind:
        place += f" ({kind})"
    rest = rest.removeprefix(".resource").lstrip(".")
    return f"{place}, field {rest}" if rest else place


def issues_in_words(issues: list[OutcomeIssue], *, lines: list[int] | None, kinds: dict[int, str]) -> list[str]:
    """Each problem as one sentence: where it is, in entries or lines and field names, and what is wrong."""
    words = []
    for issue in issues:
        where = _where_in_words(issue.expression[0] if issue.expression else "", lines, kinds)
        message = issue.diagnostics[:1].upper() + issue.diagnostics[1:]
        words.append(f"{where}: {message}.")
    return words


def _entry_kinds(payload: bytes) -> dict[int, str]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    entries = data.get("entry") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return {}
    kinds = {}
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            kinds[i] = resource["resourceType"]
    return kinds


SKIP_ROUNDS = 5  # leaving an entry out can strand another that referred to it: that one goes in the next round


def _bad_entries(issues: list[OutcomeIssue]) -> set[int] | None:
    """The Bundle entries the issues are about, or None when one is about the file as a whole."""
    found: set[int] = set()
    for issue in issues:
        expression = issue.expression[0] if issue.expression else ""
        index_text = expression.removeprefix("Bundle.entry[").partition("]")[0]
        if not expression.startswith("Bundle.entry[") or not index_text.isdigit():
            return None
        found.add(int(index_text))
    return found


def _import_skipping(
    *, patient: Patient, user: User, payload: bytes, lines: list[int] | None, source: Source
) -> tuple[IngestResult, list[str]]:
    """Import every entry that passes, leaving out the ones that do not, as the patient asked.

    Raises ImportRejected when a problem is about the whole file, or when nothing would be left.
    """
    document = orjson.loads(payload)
    kinds = _entry_kinds(payload)
    kept = list(range(len(document.get("entry") or [])))  # original indices of the entries still in
    skipped: list[str] = []
    for _ in range(SKIP_ROUNDS):
        trial = dumps_exact({**document, "entry": [document["entry"][i] for i in kept]})
        try:
            return fhir_ingest(payload=trial, actor=f"user:{user.pk}", patient=patient, source=source), skipped
        except InvalidFHIR as exc:
            bad = _bad_entries(exc.issues)
            if not bad:
                problems = issues_in_words(exc.issues, lines=None, kinds={})
                raise ImportRejected("the file was not imported", problems, status=exc.status) from exc
            for issue in exc.issues:
                index = kept[int(issue.expression[0].removeprefix("Bundle.entry[").partition("]")[0])]
                where = f"Bundle.entry[{index}]" + issue.expression[0].partition("]")[2]
                moved = OutcomeIssue(issue.code, issue.diagnostics, (where,), issue.severity)
                skipped.extend(issues_in_words([moved], lines=lines, kinds=kinds))
            kept = [original for position, original in enumerate(kept) if position not in bad]
            if not kept:
                raise ImportRejected("the file was not imported", skipped[:200]) from exc
    raise ImportRejected("the file was not imported", skipped[:200])


def record_import(
    *, patient: Patient, user: User, payload: bytes, filename: str, source_label: str = "", skip_bad: bool = False
) -> ImportReport:
    """Import an uploaded FHIR Bundle, resource or ndjson file into the patient's own record.

    All or nothing, unless the patient asked (`skip_bad`) to import the entries that pass and
    leave out the rest, which the report then lists. Every resource is tagged with the
    source label the patient gave. Raises ImportRejected listing every problem in plain words
    (nothing is stored then); `partial` on it says whether skipping the bad entries could help.
    """
    lines: list[int] | None = None
    source = Source(label=source_label.strip())
    if filename.lower().endswith((".ndjson", ".jsonl")):
        payload, lines = ndjson_as_batch(payload)
    skipped: list[str] = []
    try:
        result: IngestResult = fhir_ingest(payload=payload, actor=f"user:{user.pk}", patient=patient, source=source)
    except InvalidFHIR as exc:
        bad = _bad_entries(exc.issues)
        if skip_bad and bad:
            result, skipped = _import_skipping(patient=patient, user=user, payload=payload, lines=lines, source=source)
        else:
            problems = issues_in_words(exc.issues, lines=lines, kinds=_entry_kinds(payload))
            rejected = ImportRejected("the file was not imported", problems, status=exc.status)
            rejected.partial = bad is not None and 0 < len(bad) < len(_entry_kinds(payload))
            raise rejected from exc
    return ImportReport(
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
        source=source.label,
        skipped=tuple(skipped[:200]),
    )
