"""The access log as the patient reads it: who did what, why, grouped into bursts, with proofs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from accounts.models import User
from audit.chain_check import AnchoredProof, access_log_anchored_proof
from audit.models import AccessLogEntry, Outcome
from audit.selectors import access_log_entries_for_patient
from consent import gate
from consent.purposes import Purpose
from healthledger.errors import ChainError, ChainUnavailable, HealthLedgerError, ResourceNotFound
from ledger.client import ChainClient, chain_client
from portal.metrics import series_for_code
from portal.plain import type_words
from portal.selectors.grants import CATEGORY_WORDS
from portal.selectors.people import person_name
from records.models import Patient

ACTION_WORDS = {
    "accounts.close": "Closed the account",
    "records.read": "Read",
    "records.search": "Searched",
    "records.export": "Downloaded the whole record",
    "records.export.download": "Downloaded a bulk export file holding part of your record",
    "records.write": "Added or updated",
    "records.erase": "Erased the record",
    "records.integrity": "Found stored data that failed its integrity check (tampered or damaged); it was not shown",
    "consent.grant.issue": "Granted access",
    "consent.grant.revoke": "Revoked access",
    "consent.key.created": "Registered a signing key made in your browser",
    "consent.key.taken": "Took your signing key into your browser; the server's copy was destroyed",
    "consent.key.rotated": "Replaced your signing key (signed with the old key too)",
    "consent.key.release": "Handed the signing key the operator held to your browser",
    "consent.key.backup.store": "Stored an encrypted backup of your signing key (only your backup passphrase opens it)",
    "consent.key.backup.fetch": "Sent your encrypted key backup to your browser, to restore your key there",
    "consent.key.backup.delete": "Deleted the encrypted backup of your signing key",
    "accounts.admin.change": "An administrator changed your account",
    "accounts.admin.password": "An administrator set a new password on your account",
    "accounts.admin.second_factor.remove": "An administrator removed your authenticator app",
    "consent.break-glass.review": "Reviewed an emergency (break-glass) access",
}


class ChainSnapshot:
    """A chain client that reads the anchor events once per page, not once per row.

    Wraps the real client; a failure is remembered too, so a chain that is down costs one
    timeout for the whole page and every row then says "not verifiable right now".
    """

    def __init__(self, client: ChainClient | None, error: HealthLedgerError | None = None) -> None:
        self._client = client
        self._error = error
        self._anchors: dict[int, Any] = {}
        self._head: bytes | None = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            raise self._error or ChainUnavailable("no chain")
        return getattr(self._client, name)

    def anchors(self, from_block: int = 0) -> Any:
        if self._error is not None:
            raise self._error
        if from_block not in self._anchors:
            try:
                self._anchors[from_block] = self.__getattr__("anchors")(from_block)
            except (ChainUnavailable, ChainError) as exc:
                self._error = exc
                raise
        return self._anchors[from_block]

    def anchor_head(self) -> bytes:
        if self._error is not None:
            raise self._error
        if self._head is None:
            try:
                self._head = self.__getattr__("anchor_head")()
            except (ChainUnavailable, ChainError) as exc:
                self._error = exc
                raise
        return self._head


def chain_snapshot() -> ChainSnapshot:
    try:
        return ChainSnapshot(chain_client())
    except (ChainUnavailable, ChainError) as exc:
        return ChainSnapshot(None, exc)


def entry_proof(entry: AccessLogEntry, snapshot: ChainSnapshot | None = None) -> AnchoredProof:
    """The entry's inclusion proof into the root anchored on chain (never raises for a chain that is down)."""
    return access_log_anchored_proof(entry=entry, client=snapshot or chain_snapshot())  # type: ignore[arg-type]


@dataclass
class AccessRow:
    entry: AccessLogEntry
    who: str
    is_self: bool
    what: str
    why: str
    grant_ref: str
    permitted: bool
    proof_status: str  # verified / pending / failed / unavailable
    resource_links: list[tuple[str, str]] = field(default_factory=list)  # (label, "Type/id")
    technical: str = ""  # the query as asked, one click away for those who want it
    burst: list[AccessRow] = field(default_factory=list)  # later rows of the same burst, shown under this one

    @property
    def burst_status(self) -> str:
        """The burst's verification: verified only when every entry in it is."""
        statuses = {self.proof_status, *(r.proof_status for r in self.burst)}
        for worst in ("failed", "unavailable", "pending"):
            if worst in statuses:
                return worst
        return "verified"


def _actor_names(actors: Iterable[str], *, me: User) -> dict[str, str]:
    ids = {int(a.split(":", 1)[1]) for a in actors if a.startswith("user:") and a.split(":", 1)[1].isdigit()}
    users = {u.pk: u for u in User.objects.filter(pk__in=ids)}
    names: dict[str, str] = {}
    for actor in actors:
        kind, _, ident = actor.partition(":")
        if kind == "user" and ident.isdigit() and int(ident) in users:
            user = users[int(ident)]
            names[actor] = "You" if user.pk == me.pk else f"{person_name(user)} ({user.get_role_display()})"
        elif kind == "job":
            names[actor] = f"AI model job {ident}"
        elif kind == "system":
            names[actor] = f"HealthLedger ({ident.replace('_', ' ')})"
        else:
            names[actor] = "Unknown (not signed in)" if actor == "anonymous" else actor
    return names


PLURAL_WORDS = {
    "Observation": "measurements and test results",
    "Condition": "conditions",
    "MedicationRequest": "prescriptions",
    "Encounter": "visits",
    "Immunization": "immunizations",
    "Procedure": "procedures",
    "AllergyIntolerance": "allergies",
    "DiagnosticReport": "reports",
    "CarePlan": "care plans",
    "Patient": "records of your details",
    "RiskAssessment": "results of automated checks",
}
BURST_GAP = timedelta(minutes=5)


def _query_parts(query: str) -> tuple[str, dict[str, str]]:
    """ "Observation?category=sys|laboratory&date=ge2020-01-01" as ("Observation", {"category": "laboratory", ...})."""
    kind, _, rest = query.partition("?")
    params: dict[str, str] = {}
    for pair in rest.split("&"):
        name, _, value = pair.partition("=")
        if name and value:
            params[name.split(":")[0]] = value.rsplit("|", 1)[-1]
    return kind.split(" ")[0].strip(), params


def _kind_words(kind: str, params: dict[str, str], count: int) -> str:
    """What was read, in words: "lab results", "blood pressure values", "measurements and test results"."""
    if params.get("category") in CATEGORY_WORDS:
        return CATEGORY_WORDS[params["category"]].lower()
    series = series_for_code(params.get("code", "")) if params.get("code") else None
    if series is not None:
        return f"{series.label.split(' (')[0].lower()} values"
    if count == 1:
        return type_words(kind).lower() if kind else "item"
    return PLURAL_WORDS.get(kind, f"{type_words(kind).lower()} items" if kind else "items")


def _date_words(params: dict[str, str]) -> str:
    years = sorted(
        {v.lstrip("geltq")[:4] for k, v in params.items() if k == "date" and v.lstrip("geltq")[:4].isdigit()}
    )
    if len(years) == 1:
        return f" from {years[0]}"
    return f" from {years[0]} to {years[-1]}" if years else ""


def _what(entry: AccessLogEntry) -> tuple[str, list[tuple[str, str]], str]:
    """The entry in words ("Searched: 3 lab results from 2020"), links to what was read, and the query as asked."""
    words = ACTION_WORDS.get(entry.action, entry.action)
    refs = [str(r) for r in entry.resource_ids or []]
    query = gate.access_log_text(patient_id=entry.patient_ref, text=entry.query) if entry.query else ""
    kind, params = _query_parts(query)
    if not kind and refs:
        kind = refs[0].split("/")[0]
    if entry.action in ("records.read", "records.search") and (refs or kind):
        count = len(refs)
        noun = _kind_words(kind, params, count)
        words += f": {'nothing' if not count else ('a ' + noun if count == 1 else f'{count} {noun}')}"
        words += _date_words(params)
    links = []
    for number, ref in enumerate(refs[:5], start=1):
        parts = ref.split("/")
        if len(parts) >= 2:
            label = type_words(parts[0]) if len(refs) == 1 else f"item {number}"
            links.append((label, f"{parts[0]}/{parts[1]}"))
    return words, links, query


def _why(entry: AccessLogEntry) -> str:
    try:
        words = Purpose(entry.purpose).label if entry.purpose else "—"
    except ValueError:
        words = entry.purpose
    if entry.break_glass and entry.reason:
        words += f": “{gate.access_log_text(patient_id=entry.patient_ref, text=entry.reason)}”"
    return words


def access_rows(
    *, patient: Patient, me: User, include_own: bool, limit: int, offset: int, verify: bool = True
) -> tuple[list[AccessRow], bool]:
    """One page of the patient's access log in words, with each entry's chain verification; and whether more follow."""
    entries = access_log_entries_for_patient(patient_ref=patient.pk)
    if not include_own:
        entries = entries.exclude(actor=f"user:{me.pk}")
    page = list(entries[offset : offset + limit + 1])
    more = len(page) > limit
    page = page[:limit]
    names = _actor_names({e.actor for e in page}, me=me)
    snapshot = chain_snapshot() if verify else None
    rows = []
    for entry in page:
        what, links, technical = _what(entry)
        status = entry_proof(entry, snapshot).status if snapshot is not None else "pending"
        rows.append(
            AccessRow(
                entry=entry,
                who=names[entry.actor],
                is_self=entry.actor == f"user:{me.pk}",
                what=what,
                why=_why(entry),
                grant_ref=entry.grant_ref,
                permitted=entry.outcome == Outcome.PERMIT,
                proof_status=status,
                resource_links=links,
                technical=technical,
            )
        )
    return bursts_grouped(rows), more


def _same_burst(head: AccessRow, row: AccessRow, previous: AccessRow) -> bool:
    a, b = head.entry, row.entry
    return (
        (a.actor, a.action, a.outcome, a.purpose, a.grant_ref) == (b.actor, b.action, b.outcome, b.purpose, b.grant_ref)
        and not a.break_glass
        and not b.break_glass
        and abs(previous.entry.at - b.at) <= BURST_GAP
    )


def bursts_grouped(rows: list[AccessRow]) -> list[AccessRow]:
    """Consecutive rows of one actor doing one thing under one grant within minutes of each other, as one line.

    The first row stands for the burst; the others hang under it (row.burst) and still show one by one
    when the line is opened. Break-glass entries always stand alone.
    """
    grouped: list[AccessRow] = []
    for row in rows:
        head = grouped[-1] if grouped else None
        if head is not None and _same_burst(head, row, head.burst[-1] if head.burst else head):
            head.burst.append(row)
        else:
            grouped.append(row)
    return grouped


def access_entry_get(*, patient: Patient, entry_id: int) -> AccessLogEntry:
    """One entry about this patient; an entry about anyone else is as missing as an invented one."""
    entry = AccessLogEntry.objects.filter(pk=entry_id, patient_ref=patient.pk).first()
    if entry is None:
        raise ResourceNotFound("access log entry not found")
    return entry


def access_row(*, entry: AccessLogEntry, me: User) -> AccessRow:
    what, links, technical = _what(entry)
    return AccessRow(
        entry=entry,
        who=_actor_names([entry.actor], me=me)[entry.actor],
        is_self=entry.actor == f"user:{me.pk}",
        what=what,
        why=_why(entry),
        grant_ref=entry.grant_ref,
        permitted=entry.outcome == Outcome.PERMIT,
        proof_status="pending",
        resource_links=links,
        technical=technical,
    )
