"""Reads the portal composes for its pages. Patient data only ever comes through consent.gate.

Rows that are not health data (grants, access-log entries, user names) are read
from their own apps' models and selectors; every FHIR body is a gate read, so each
page a patient opens is itself in their access log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from django.db.models import Count, Q, QuerySet

from accounts.models import ClinicianProfile, Role, User
from audit.chain_check import AnchoredProof, access_log_anchored_proof
from audit.models import AccessLogEntry, Outcome
from audit.selectors import access_log_entries_for_patient
from consent import gate
from consent.models import Grant, GrantStatus
from consent.purposes import ALL_RESOURCE_TYPES, Purpose
from diagnostics.inference import list_models
from diagnostics.selectors import job_reason_detail
from healthledger.errors import ChainError, ChainUnavailable, HealthLedgerError, ResourceNotFound
from ledger.client import ChainClient, chain_client
from portal.metrics import (
    CREATININE,
    METRICS,
    Metric,
    Point,
    Refusal,
    egfr_from_creatinine,
    measure,
    points_for,
    series_for_code,
    shown,
)
from portal.plain import (
    UNLABELLED,
    TimelineView,
    concept_text,
    resource_flag,
    resource_source,
    resource_title,
    resource_value,
    resource_when,
    type_words,
)
from records.models import Patient, Resource, ResourceVersion
from records.selectors import SEARCH_LIMIT_MAX, SearchCriteria

EXPIRING_SOON = timedelta(days=7)
ERASED_RECORD = "Record erased"
LIVE_STATUSES = (GrantStatus.PENDING, GrantStatus.RECORDED)

ACTION_WORDS = {
    "accounts.close": "Closed the account",
    "records.read": "Read",
    "records.search": "Searched",
    "records.export": "Downloaded the whole record",
    "records.write": "Added or updated",
    "records.erase": "Erased the record",
    "records.integrity": "Found stored data that failed its integrity check (tampered or damaged); it was not shown",
    "consent.grant.issue": "Granted access",
    "consent.grant.revoke": "Revoked access",
    "consent.key.created": "Registered a signing key made in your browser",
    "consent.key.taken": "Took your signing key into your browser; the server's copy was destroyed",
    "consent.key.rotated": "Replaced your signing key (signed with the old key too)",
    "consent.key.release": "Handed the signing key the operator held to your browser",
    "accounts.admin.change": "An administrator changed your account",
    "accounts.admin.password": "An administrator set a new password on your account",
    "accounts.admin.second_factor.remove": "An administrator removed your authenticator app",
    "consent.break-glass.review": "Reviewed an emergency (break-glass) access",
}
CATEGORY_WORDS = {
    "vital-signs": "Vital signs",
    "laboratory": "Lab results",
    "social-history": "Social history",
    "survey": "Surveys and questionnaires",
    "imaging": "Imaging",
    "procedure": "Procedures",
    "exam": "Examinations",
}


# --- people ------------------------------------------------------------------------------


def person_name(user: User) -> str:
    return user.get_full_name() or user.get_username()


def clinicians_directory() -> QuerySet[User]:
    """Clinicians a patient can share with, by name (only clinicians: never a patient, researcher or steward)."""
    return (
        User.objects.filter(role=Role.CLINICIAN, is_active=True)
        .select_related("clinician_profile")
        .order_by("last_name", "first_name", "username")
    )


@dataclass(frozen=True)
class DirectoryEntry:
    """One clinician as the sharing directory shows them."""

    user: User
    name: str  # "Dr Jane Smith"
    organisation: str
    specialty: str

    @property
    def words(self) -> str:
        """Who, the way the review step says it: "Dr Jane Smith at Riverside Clinic"."""
        return f"{self.name} at {self.organisation}" if self.organisation else self.name


def _profile(user: User) -> ClinicianProfile | None:
    try:
        return user.clinician_profile
    except ClinicianProfile.DoesNotExist:
        return None


def directory_entry(user: User) -> DirectoryEntry:
    profile = _profile(user)
    name = person_name(user)
    if profile is not None and profile.title and user.get_full_name():
        name = f"{profile.title} {name}"
    return DirectoryEntry(
        user=user,
        name=name,
        organisation=profile.organisation if profile is not None else "",
        specialty=profile.specialty if profile is not None else "",
    )


DIRECTORY_PAGE = 50


def clinician_directory_search(*, query: str = "") -> list[DirectoryEntry]:
    """Clinicians whose name, organisation or specialty holds every word of `query`, at most DIRECTORY_PAGE.

    Searches clinicians only, so no query, however chosen, tells a patient who else has an account.
    """
    found = clinicians_directory()
    for word in query.split()[:8]:
        found = found.filter(
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(username__icontains=word)
            | Q(clinician_profile__organisation__icontains=word)
            | Q(clinician_profile__specialty__icontains=word)
        )
    return [directory_entry(user) for user in found[:DIRECTORY_PAGE]]


def clinician_directory_get(*, clinician_id: object) -> DirectoryEntry:
    """One clinician of the directory; any other id (a patient's too) is simply not found."""
    try:
        user = clinicians_directory().filter(pk=int(str(clinician_id))).first()
    except ValueError:
        user = None
    if user is None:
        raise ResourceNotFound("clinician not found")
    return directory_entry(user)


# --- grants ------------------------------------------------------------------------------


def scope_words(grant: Grant) -> str:
    """What a grant covers, in words: "everything", or types, narrowed to categories."""
    if ALL_RESOURCE_TYPES in grant.resource_types:
        what = "Your whole record"
    else:
        what = ", ".join(type_words(t) for t in grant.resource_types)
    if grant.categories:
        cats = ", ".join(CATEGORY_WORDS.get(c.split("|", 1)[1], c.split("|", 1)[1]) for c in grant.categories)
        what += f" (only: {cats})"
    return what


@dataclass(frozen=True)
class GrantRow:
    grant: Grant
    status: str  # pending / recorded / expired / revoked / failed / not yet valid
    grantee_name: str
    scope: str
    purpose: str
    revocable: bool


def grant_row(grant: Grant, now: datetime) -> GrantRow:
    status = grant.effective_status(now)
    return GrantRow(
        grant=grant,
        status=status,
        grantee_name=directory_entry(grant.grantee).words,
        scope=scope_words(grant),
        purpose=Purpose(grant.purpose).label,
        revocable=grant.status in LIVE_STATUSES,
    )


def patient_grants(*, patient: Patient, now: datetime) -> list[GrantRow]:
    """Every grant the patient made, newest first, with the status a person would give it."""
    grants = Grant.objects.filter(patient=patient).select_related("grantee").order_by("-created_at")
    return [grant_row(g, now) for g in grants]


def patient_grant_get(*, patient: Patient, grant_id: str) -> Grant:
    """One of the patient's own grants; another patient's id is as missing as an invented one."""
    grant = Grant.objects.select_related("grantee").filter(patient=patient, pk=grant_id).first()
    if grant is None:
        raise ResourceNotFound("grant not found")
    return grant


# --- the access log ---------------------------------------------------------------------------


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


# --- the dashboard ----------------------------------------------------------------------------


@dataclass
class Dashboard:
    shared: list[GrantRow]
    expiring: list[GrantRow]
    recent: list[AccessRow]
    break_glass: list[AccessRow]
    denied_count: int
    resource_count: int


def dashboard(*, patient: Patient, me: User, now: datetime) -> Dashboard:
    """What is shared with whom until when, what is about to end, who looked lately, and every break-glass."""
    rows = patient_grants(patient=patient, now=now)
    shared = [r for r in rows if r.status in ("recorded", "pending", "not yet valid")]
    expiring = [r for r in shared if r.status == "recorded" and r.grant.not_after - now <= EXPIRING_SOON]
    recent, _ = access_rows(patient=patient, me=me, include_own=False, limit=8, offset=0, verify=False)
    glass_entries = list(access_log_entries_for_patient(patient_ref=patient.pk).filter(break_glass=True)[:20])
    names = _actor_names({e.actor for e in glass_entries}, me=me)
    break_glass = []
    for entry in glass_entries:
        row = access_row(entry=entry, me=me)
        row.who = names[entry.actor]
        break_glass.append(row)
    denied = (
        access_log_entries_for_patient(patient_ref=patient.pk)
        .filter(outcome=Outcome.DENY, at__gte=now - timedelta(days=30))
        .count()
    )
    return Dashboard(
        shared=shared,
        expiring=expiring,
        recent=recent,
        break_glass=break_glass,
        denied_count=denied,
        resource_count=Resource.objects.filter(patient=patient).count(),
    )


# --- the record, through the gate ------------------------------------------------------------------


def _bodies(
    caller: gate.Caller,
    patient: Patient,
    resource_type: str,
    *,
    code: str | None = None,
    category: str | None = None,
    query: str = "",
) -> list[dict[str, Any]]:
    """Every matching resource, page by page through the gate (each page one access-log entry)."""
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = gate.resource_search(
            caller=caller,
            patient=patient,
            resource_type=resource_type,
            code=code,
            category=category,
            limit=SEARCH_LIMIT_MAX,
            offset=offset,
            query=query,
        )
        found.extend(orjson.loads(body) for body in page.bodies)
        if len(page.bodies) < SEARCH_LIMIT_MAX:
            return found
        offset += SEARCH_LIMIT_MAX


@dataclass(frozen=True)
class TimelineItem:
    when: str
    title: str
    value: str
    resource_type: str
    resource_id: str
    flag: str = ""
    source: str = ""


def record_sources(*, caller: gate.Caller, patient: Patient) -> list[str]:
    """The labels of the sources the record was imported from (each source brings a Patient resource of its own)."""
    bodies = _bodies(caller, patient, "Patient", query="Patient (where my records came from)")
    return sorted({resource_source(body) for body in bodies} - {UNLABELLED})


def timeline(*, caller: gate.Caller, patient: Patient, view: TimelineView) -> list[TimelineItem]:
    """One timeline tab, newest first."""
    query = f"{view.resource_type}?category={view.category}" if view.category else view.resource_type
    bodies = _bodies(caller, patient, view.resource_type, category=view.category, query=query)
    items = [
        TimelineItem(
            when=resource_when(body) or "",
            title=resource_title(body),
            value=resource_value(body),
            resource_type=view.resource_type,
            resource_id=str(body.get("id", "")),
            flag=resource_flag(body),
            source=resource_source(body),
        )
        for body in bodies
    ]
    return sorted(items, key=lambda item: item.when, reverse=True)


def record_counts(*, patient: Patient) -> dict[str, int]:
    """How many resources of each type the record holds (row counts: nothing is decrypted)."""
    rows = Resource.objects.filter(patient=patient).values("resource_type").annotate(n=Count("id"))
    return {row["resource_type"]: row["n"] for row in rows.order_by("resource_type")}


def _patient_demographics(caller: gate.Caller, patient: Patient) -> tuple[date | None, str | None]:
    bodies = _bodies(caller, patient, "Patient", query="Patient (for the eGFR equation: birth date and sex)")
    for body in bodies:
        try:
            born = date.fromisoformat(str(body.get("birthDate", ""))[:10])
        except ValueError:
            born = None
        return born, body.get("gender")
    return None, None


def _points_json(points: list[Point]) -> list[dict[str, object]]:
    return [
        {
            "x": p.at,
            "y": p.value,
            "ref": p.reference,
            "exact": p.exact,
            "recorded": p.recorded,
            "flag": p.flag,
            "low": p.low,
            "high": p.high,
            "own_range": p.own_range,
        }
        for p in points
    ]


def _refused_json(refused: list[Refusal]) -> list[dict[str, object]]:
    return [{"x": r.at, "ref": r.reference, "recorded": r.recorded, "reason": r.reason} for r in refused]


def _observations_coded(
    caller: gate.Caller, patient: Patient, codes: Iterable[str], query: str
) -> list[dict[str, Any]]:
    """Every Observation carrying any of the codes, in one search (one access-log entry per thousand)."""
    criteria = SearchCriteria(codes=(tuple(dict.fromkeys(codes)),))
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = gate.resource_search_counted(
            caller=caller,
            patient=patient,
            resource_type="Observation",
            criteria=criteria,
            limit=SEARCH_LIMIT_MAX,
            offset=offset,
            query=query,
        )
        found.extend(orjson.loads(body) for body in page.bodies)
        if len(page.bodies) < SEARCH_LIMIT_MAX:
            return found
        offset += SEARCH_LIMIT_MAX


def _chart(metric: Metric, bodies: list[dict[str, Any]], computed: list[Point]) -> dict[str, object]:
    series: list[dict[str, object]] = []
    for item in metric.series:
        points, refused = measure(bodies, item)
        series.append(
            {
                "key": item.key,
                "label": item.label,
                "low": item.low,
                "high": item.high,
                "points": _points_json(points),
                "refused": _refused_json(refused),
            }
        )
    if metric.derived_egfr:
        series.append(
            {
                "key": "egfr-computed",
                "label": "eGFR computed from your creatinine (CKD-EPI 2021)",
                "low": 90,
                "high": None,
                "points": _points_json(computed),
                "refused": [],
            }
        )
    return {"slug": metric.slug, "title": metric.title, "unit": metric.unit, "series": series}


def metric_charts(*, caller: gate.Caller, patient: Patient, metrics: Iterable[Metric]) -> list[dict[str, object]]:
    """Charts' data: each series' points (time, value, source resource) and its reference range.

    All the charts of a page come from one search (one entry in the patient's own access log),
    plus one read of the Patient resource when eGFR is computed from creatinine.
    """
    chosen = list(metrics)
    derived = any(m.derived_egfr for m in chosen)
    codes = [code for m in chosen for code in m.search_codes]
    if derived:
        codes += [f"http://loinc.org|{c}" for c in CREATININE.codes]
    titles = ", ".join(m.title for m in chosen)
    bodies = _observations_coded(caller, patient, codes, f"Observation (charts: {titles})")
    computed: list[Point] = []
    if derived:
        creatinine = points_for(bodies, CREATININE)
        if creatinine:
            born, sex = _patient_demographics(caller, patient)
            computed = egfr_from_creatinine(creatinine, birth_date=born, sex=sex)
    return [_chart(metric, bodies, computed) for metric in chosen]


@dataclass(frozen=True)
class Latest:
    """The newest value of one measurement, as the dashboard shows it."""

    label: str
    value: str
    unit: str
    flag: str
    when: str
    reference: str


@dataclass
class Health:
    latest: list[Latest]
    conditions: list[TimelineItem]
    medications: list[TimelineItem]
    immunizations_due: list[TimelineItem] = field(default_factory=list)


DUE_FORECASTS = {"due", "overdue"}


def _immunizations_due(caller: gate.Caller, patient: Patient) -> list[TimelineItem]:
    """Vaccines the record's ImmunizationRecommendations say are due or overdue (read only when there are any)."""
    if not Resource.objects.filter(patient=patient, resource_type="ImmunizationRecommendation").exists():
        return []
    due: list[TimelineItem] = []
    query = "ImmunizationRecommendation (dashboard: immunizations due)"
    for body in _bodies(caller, patient, "ImmunizationRecommendation", query=query):
        for item in body.get("recommendation", []) or []:
            if not isinstance(item, dict):
                continue
            forecast = {
                c.get("code") for c in (item.get("forecastStatus") or {}).get("coding", []) if isinstance(c, dict)
            }
            if not forecast & DUE_FORECASTS:
                continue
            dates = [d.get("value") for d in item.get("dateCriterion", []) or [] if isinstance(d, dict)]
            due.append(
                TimelineItem(
                    when=str(next((d for d in dates if isinstance(d, str)), "")),
                    title=concept_text((item.get("vaccineCode") or [None])[0]) or "A vaccine",
                    value="Overdue" if "overdue" in forecast else "Due",
                    resource_type="ImmunizationRecommendation",
                    resource_id=str(body.get("id", "")),
                )
            )
    return sorted(due, key=lambda i: i.when)


ACTIVE_CONDITION = {"active", "recurrence", "relapse"}


def _active(body: dict[str, Any]) -> bool:
    if body.get("resourceType") == "MedicationRequest":
        return body.get("status") == "active"
    status = body.get("clinicalStatus")
    codes = {c.get("code") for c in (status or {}).get("coding", []) if isinstance(c, dict)}
    return bool(codes & ACTIVE_CONDITION)


def _current(caller: gate.Caller, patient: Patient, resource_type: str, query: str) -> list[TimelineItem]:
    bodies = [b for b in _bodies(caller, patient, resource_type, query=query) if _active(b)]
    items = {
        resource_title(b): TimelineItem(
            when=resource_when(b) or "",
            title=resource_title(b),
            value="",
            resource_type=resource_type,
            resource_id=str(b.get("id", "")),
            source=resource_source(b),
        )
        for b in sorted(bodies, key=lambda b: resource_when(b) or "")
    }
    return sorted(items.values(), key=lambda item: item.title.lower())


def health_summary(*, caller: gate.Caller, patient: Patient) -> Health:
    """What the dashboard opens on: the newest value of each charted measurement with its flag, and what is active.

    Three searches (three entries in the patient's own log): the measurements, conditions, prescriptions.
    """
    codes = [code for m in METRICS for code in m.search_codes]
    bodies = _observations_coded(caller, patient, codes, "Observation (dashboard: latest measurements)")
    latest: list[Latest] = []
    for metric in METRICS:
        for item in metric.series:
            points = points_for(bodies, item)
            if points:
                newest = points[-1]
                value = shown(newest.value, item.decimals)
                latest.append(Latest(item.label, value, metric.unit, newest.flag, newest.at, newest.reference))
    return Health(
        latest=latest,
        conditions=_current(caller, patient, "Condition", "Condition (dashboard: active conditions)"),
        medications=_current(
            caller, patient, "MedicationRequest", "MedicationRequest (dashboard: active prescriptions)"
        ),
        immunizations_due=_immunizations_due(caller, patient),
    )


def metric_chart(*, caller: gate.Caller, patient: Patient, metric: Metric) -> dict[str, object]:
    """One chart's data (see metric_charts)."""
    return metric_charts(caller=caller, patient=patient, metrics=[metric])[0]


# --- clinicians -----------------------------------------------------------------------------------


@dataclass
class SharedPatient:
    patient: Patient
    name: str
    grants: list[GrantRow]


def shared_with(*, clinician: User, now: datetime) -> list[SharedPatient]:
    """The patients whose grants name this clinician, with those grants (live first)."""
    grants = (
        Grant.objects.filter(grantee=clinician)
        .exclude(status=GrantStatus.FAILED)
        .select_related("patient__user", "grantee")
        .order_by("-not_after")
    )
    by_patient: dict[uuid.UUID, SharedPatient] = {}
    for grant in grants:
        entry = by_patient.get(grant.patient_id)
        if entry is None:
            owner = grant.patient.user
            if grant.patient.is_erased:
                # Erasure leaves the grant rows (revoked) but nothing that says whose record it was.
                name = ERASED_RECORD
            else:
                name = person_name(owner) if owner is not None else "A patient"
            entry = by_patient[grant.patient_id] = SharedPatient(patient=grant.patient, name=name, grants=[])
        entry.grants.append(grant_row(grant, now))
    return sorted(by_patient.values(), key=lambda s: s.name.lower())


def shared_patient_get(*, clinician: User, patient_id: uuid.UUID, now: datetime) -> SharedPatient:
    """A patient who granted this clinician something; any other patient id is simply not found."""
    for shared in shared_with(clinician=clinician, now=now):
        if shared.patient.pk == patient_id:
            return shared
    raise ResourceNotFound("patient not found")


def clinician_listing(*, caller: gate.Caller, patient: Patient, resource_type: str) -> list[TimelineItem]:
    """The resources of one type a grant lets this clinician read (the gate narrows to its categories), newest first."""
    bodies = _bodies(caller, patient, resource_type, query=f"{resource_type} (clinician page)")
    items = [
        TimelineItem(
            when=resource_when(body) or "",
            title=resource_title(body),
            value=resource_value(body),
            resource_type=resource_type,
            resource_id=str(body.get("id", "")),
        )
        for body in bodies
    ]
    return sorted(items, key=lambda item: item.when, reverse=True)


# --- erasure ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureSummary:
    erased_at: datetime | None
    resources: int
    versions: int
    grants_on_chain: int
    log_entries: int


def erasure_summary(*, patient: Patient) -> ErasureSummary:
    """Counts of what erasure made unreadable and of what stays (row counts only, nothing decrypted)."""
    return ErasureSummary(
        erased_at=patient.erased_at,
        resources=Resource.objects.filter(patient=patient).count(),
        versions=ResourceVersion.objects.filter(resource__patient=patient).count(),
        grants_on_chain=Grant.objects.filter(patient=patient).filter(~Q(tx_hash="")).count(),
        log_entries=AccessLogEntry.objects.filter(patient_ref=patient.pk).count(),
    )


# --- AI: models and the patient's own jobs --------------------------------------------------------

RESULTS_SHOWN = 10


@dataclass(frozen=True)
class ModelCard:
    id: str
    title: str
    version: str
    intended_use: str
    reads: list[str]


def model_card(spec: Any) -> ModelCard:
    """What a model is for and what it reads, in words (from its declared spec)."""
    reads = [
        f"{type_words(i.resource_type)}: {i.name.replace('_', ' ')}"
        + (f" (from the last {i.lookback_days} days)" if i.lookback_days else "")
        + ("" if i.required else ", if present")
        for i in spec.inputs
    ]
    return ModelCard(id=spec.id, title=spec.title, version=spec.version, intended_use=spec.intended_use, reads=reads)


@dataclass
class AiResult:
    summary: str = ""
    qualitative: str = ""
    probability: float | None = None
    outputs: list[tuple[str, str]] = field(default_factory=list)
    contributions: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, value, effect, rule
    notes: list[str] = field(default_factory=list)
    reference: str = ""


@dataclass
class AiJob:
    job: Any
    title: str
    active: bool
    result: AiResult | None
    reason_detail: str = ""  # the model's own words for why it did not run, opened for the patient


def _ext_value(parts: list[dict[str, Any]], url: str) -> str:
    for part in parts:
        if part.get("url") == url:
            for key, value in part.items():
                if key.startswith("value"):
                    return str(value)
    return ""


def risk_assessment_in_words(resource: dict[str, Any]) -> AiResult:
    """A released RiskAssessment as the page shows it: the sentence, each output and each contribution with its rule."""
    prediction = (resource.get("prediction") or [{}])[0]
    result = AiResult(
        summary=str(prediction.get("rationale", "")),
        qualitative=str((prediction.get("qualitativeRisk") or {}).get("text", "")),
        probability=prediction.get("probabilityDecimal"),
        notes=[str(n.get("text", "")) for n in resource.get("note", []) if isinstance(n, dict)],
        reference=f"RiskAssessment/{resource.get('id', '')}",
    )
    for ext in resource.get("extension", []) or []:
        url = str(ext.get("url", ""))
        parts = ext.get("extension", []) or []
        name = _ext_value(parts, "name").replace("_", " ")
        if url.endswith("/model-output"):
            result.outputs.append((name, _ext_value(parts, "value")))
        elif url.endswith("/model-contribution"):
            result.contributions.append(
                (name, _ext_value(parts, "value"), _ext_value(parts, "effect"), _ext_value(parts, "rule"))
            )
    return result


def ai_jobs(*, caller: gate.Caller, patient: Patient, jobs: list[Any]) -> list[AiJob]:
    """The patient's jobs, newest first, with the results of the newest ones read through the gate."""
    titles = {spec.id: spec.title for spec in list_models()}
    shown: list[AiJob] = []
    read = 0
    for job in jobs:
        result = None
        stored = getattr(job, "result", None) if job.status == "succeeded" else None
        if stored is not None and read < RESULTS_SHOWN:
            kind, ident, _, version = ([*stored.risk_assessment_ref.split("/"), "", "", "", ""])[:4]
            body = gate.resource_read(
                caller=caller,
                patient=patient,
                resource_type=kind,
                resource_id=ident,
                version=int(version) if version.isdigit() else None,
            )
            result = risk_assessment_in_words(orjson.loads(body))
            read += 1
        shown.append(
            AiJob(
                job=job,
                title=titles.get(job.model_id, job.model_id),
                active=job.status in ("queued", "running"),
                result=result,
                reason_detail=job_reason_detail(job) if job.status == "insufficient-data" else "",
            )
        )
    return shown
