"""`manage.py seed_demo`: the demo users of `make run` and a generated record for the demo patient.

Idempotent: users that exist are left as they are (their passwords too), and a
record is imported only into a demo patient whose record is still empty, so a
second run writes nothing, not even an access-log entry. Prints the logins.

When ConsentRegistry is deployed (make run deploys it first), the demo patient also
shares with the demo clinician, so the dashboard is alive: a year-long grant, one
ending in a few days, one revoked; the clinician reads under the grant, once by
break-glass, and the researcher's attempt is denied. Only into a demo patient who
has made no grant yet.

The server signs nothing in a patient's name, so this command acts as the demo patients'
device (ledger.device, which no server module may import): it makes each one a key,
registers it with a signed registration, signs her demo grants and study joins with it,
and drops it. The demo patient's recovery phrase is written to a file only the user can
read (var/demo/, never logged), from which she restores her key in the portal ("Your key",
"Recover your key on this device"). Research cohort members never sign in: their keys are
not kept anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import clinician_profile_set, user_create
from consent import gate
from consent.keys import patient_key_custody, patient_key_register, registration_typed_data
from consent.models import Grant, GrantStatus
from consent.services import grant_draft, grant_issue, grant_revoke, grant_typed_data, revoke_typed_data
from healthledger.errors import ChainError, ChainUnavailable, ResourceNotFound
from healthledger.lib.env import envstr
from ledger.device import BadPhrase, Device
from ledger.outbox import outbox_relay
from ledger.selectors import signing_domain
from records.demo import DEMO_PATIENT_SEED, generate_patient_bundle
from records.models import Patient, Resource
from records.selectors import patient_for_user, resource_search
from records.services import fhir_ingest, patient_create
from research.demo import demo_study_ensure

DEFAULT_DEMO_PASSWORD = "healthledger-demo"
ACTOR = "system:seed_demo"
DEMO_USERS = (
    ("demo.patient", Role.PATIENT),
    ("dr.demo", Role.CLINICIAN),
    ("demo.researcher", Role.RESEARCHER),
    ("demo.steward", Role.STEWARD),
)
RESEARCH_DEMO_COHORT = 25
COHORT_SEED_BASE = 1000  # cohort patients use seeds 1000, 1001, ... so none repeats the demo patient
PHRASE_FILE = "demo.patient-recovery-phrase.txt"


@dataclass
class SeedReport:
    """What a run found and did, per username."""

    created_users: list[str] = field(default_factory=list)
    existing_users: list[str] = field(default_factory=list)
    imported: dict[str, int] = field(default_factory=dict)  # username -> resources imported now
    stale_passwords: list[str] = field(default_factory=list)  # existing users whose password is not the given one
    sharing: str = ""  # what the sharing demo did, in one line (empty: nothing to do)
    research: str = ""  # what the research demo did, in one line (empty: nothing to do)
    phrase_written: bool = False  # the demo patient's key was made now and its phrase written to phrase_path()


def demo_seed(*, password: str, cohort: int = 0, research: bool = False) -> SeedReport:
    """Create what is missing of the demo users and records; change nothing that exists.

    `research`: also the demo study (research.demo), with a cohort of at least RESEARCH_DEMO_COHORT.
    """
    report = SeedReport()
    if research:
        cohort = max(cohort, RESEARCH_DEMO_COHORT)
    users: dict[str, User] = {}
    demo_patient: Patient | None = None
    for username, role in DEMO_USERS:
        user = users[username] = _user_ensure(username=username, role=role, password=password, report=report)
        if role == Role.CLINICIAN and username in report.created_users:
            _clinician_listed(user)
        if role == Role.PATIENT:
            demo_patient = _record_ensure(user=user, seed=DEMO_PATIENT_SEED, report=report)
    if demo_patient is not None:
        report.sharing = _sharing_ensure(
            patient=demo_patient,
            owner=users["demo.patient"],
            clinician=users["dr.demo"],
            researcher=users["demo.researcher"],
            report=report,
        )
    members: list[Patient] = []
    for number in range(cohort):
        # Research cohort members never log in: their accounts have no usable password.
        user = _user_ensure(username=f"demo.cohort.{number + 1:03d}", role=Role.PATIENT, password=None, report=report)
        members.append(_record_ensure(user=user, seed=COHORT_SEED_BASE + number, report=report))
    if research:
        try:
            signing_domain()
        except ChainUnavailable:
            report.research = "research demo skipped: ConsentRegistry is not deployed"
            return report
        # Each cohort member's device: a key made and registered now, used for her study join, then dropped.
        devices = {m.pk: _device_new(patient=m) for m in members if patient_key_custody(m) == "none"}
        report.research = demo_study_ensure(
            researcher=users["demo.researcher"],
            steward=users["demo.steward"],
            cohort=members,
            sign=lambda patient, typed: devices[patient.pk].sign(typed) if patient.pk in devices else "",
        )
    return report


def _user_ensure(*, username: str, role: str, password: str | None, report: SeedReport) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        report.created_users.append(username)
        return user_create(username=username, password=password, role=role)
    report.existing_users.append(username)
    if password is not None and not user.check_password(password):
        report.stale_passwords.append(username)
    return user


def _clinician_listed(user: User) -> None:
    """The demo clinician as patients find them in the sharing directory."""
    User.objects.filter(pk=user.pk).update(first_name="Dana", last_name="Demo")
    clinician_profile_set(user=user, title="Dr", organisation="HealthLedger Demo Clinic", specialty="General practice")


def _record_ensure(*, user: User, seed: int, report: SeedReport) -> Patient:
    with transaction.atomic():
        patient = patient_for_user(user_id=user.pk) or patient_create(user=user)
        if resource_search(patient=patient, limit=1).exists():
            return patient
        payload = json.dumps(generate_patient_bundle(seed), separators=(",", ":")).encode()
        result = fhir_ingest(payload=payload, actor=ACTOR, patient=patient)
    report.imported[user.username] = result.resources
    return patient


def phrase_path() -> Path:
    """Where the demo patient's recovery phrase is kept for the person who ran the seed (under the var directory)."""
    return Path(settings.VAR_DIR) / "demo" / PHRASE_FILE


def _phrase_write(phrase: str) -> Path:
    """The phrase, in a file only its owner can read (0600, in a 0700 directory); replaced whole, never logged."""
    path = phrase_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".new")
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(phrase + "\n")
    os.replace(staging, path)
    return path


def _phrase_device(patient: Patient) -> Device | None:
    """Her key from the phrase file an earlier seed wrote, if it is still the key registered for her."""
    try:
        device = Device.from_phrase(phrase_path().read_text())
    except (OSError, BadPhrase):
        return None
    registered = Patient.objects.values_list("wallet_address", flat=True).get(pk=patient.pk)
    return device if device.address == registered else None


def _device_new(*, patient: Patient) -> Device:
    """The seed acting as her browser: a fresh key, registered for her record by its own signature."""
    device = Device.new()
    typed = registration_typed_data(patient=patient, key=device.address)
    patient_key_register(
        patient=patient,
        by=patient.user,  # type: ignore[arg-type]
        address=device.address,
        signature=device.sign(typed),
    )
    return device


def _demo_device(*, patient: Patient, report: SeedReport) -> tuple[Device | None, str]:
    """The demo patient's device for the sharing demo, or why there is none (a one-line account)."""
    custody = patient_key_custody(patient)
    if custody == "none":
        device = _device_new(patient=patient)
        _phrase_write(device.phrase)
        report.phrase_written = True
        return device, ""
    if custody == "server":
        return None, "sharing demo skipped: the operator still holds the demo patient's key (an older database)"
    kept = _phrase_device(patient)
    # A key she made or restored elsewhere signs only in her browser: there is nothing the seed may sign.
    return kept, "" if kept is not None else "sharing demo skipped: the demo patient holds her own key"


def _sharing_ensure(*, patient: Patient, owner: User, clinician: User, researcher: User, report: SeedReport) -> str:
    """Grants and accesses for the demo dashboard, once; a one-line account of what happened."""
    if Grant.objects.filter(patient=patient).exists():
        return ""
    try:
        signing_domain()
    except ChainUnavailable:
        return "sharing demo skipped: ConsentRegistry is not deployed (run manage.py deploy_contracts)"
    device, skipped = _demo_device(patient=patient, report=report)
    if device is None:
        return skipped
    now = timezone.now()

    def share(types: list[str], purpose: str, days: int, categories: tuple[str, ...] = ()) -> Grant:
        terms: dict[str, Any] = {
            "patient": patient,
            "by": owner,
            "grantee": clinician,
            "resource_types": types,
            "categories": categories,
            "actions": ["read"],
            "purpose": purpose,
            "not_before": now - timedelta(minutes=1),
            "not_after": now + timedelta(days=days),
        }
        # What her browser does on the review page: sign the draft's typed data, send the signature and salts.
        draft = grant_draft(**terms)
        signature = device.sign(grant_typed_data(draft))
        return grant_issue(**terms, signature=signature, salt=draft.salt, commitment_salt=draft.commitment_salt)

    share(["Observation", "Condition", "MedicationRequest", "AllergyIntolerance", "Immunization"], "TREAT", 365)
    share(["Observation"], "CAREMGT", 4, ("http://terminology.hl7.org/CodeSystem/observation-category|laboratory",))
    ended = share(["Encounter"], "TREAT", 30)
    try:
        for _ in range(3):  # send, then see it mined: the relay a worker would run
            outbox_relay()
    except (ChainUnavailable, ChainError):
        return "sharing demo: 3 grants signed; the chain did not answer, so the worker will record them"
    grant_revoke(grant=ended, by=owner, signature=device.sign(revoke_typed_data(ended)))
    reads = _demo_accesses(patient=patient, clinician=clinician, researcher=researcher)
    recorded = Grant.objects.filter(patient=patient, status=GrantStatus.RECORDED).count()
    return f"sharing demo: 3 grants ({recorded} recorded on chain, 1 revoked), {reads} accesses logged"


def _demo_accesses(*, patient: Patient, clinician: User, researcher: User) -> int:
    """The clinician reads under the grant and once by break-glass; the researcher is refused."""
    observations = list(
        Resource.objects.filter(patient=patient, resource_type="Observation")
        .order_by("-pk")
        .values_list("fhir_id", flat=True)[:3]
    )
    condition = (
        Resource.objects.filter(patient=patient, resource_type="Condition").values_list("fhir_id", flat=True).first()
    )
    asks = [(gate.Caller(actor=clinician, purpose="TREAT"), "Observation", fhir_id) for fhir_id in observations]
    if condition:
        reason = "Brought in unconscious to the emergency department; checking known conditions."
        glass = gate.Caller(
            actor=clinician, purpose="ETREAT", reason=reason, break_glass_code="unconscious-patient", interactive=True
        )
        asks.append((glass, "Condition", condition))
    if observations:
        asks.append((gate.Caller(actor=researcher, purpose="TREAT"), "Observation", observations[0]))
    for caller, resource_type, fhir_id in asks:
        # A denied attempt raises ResourceNotFound after the gate logged it: what the demo wants to show.
        with contextlib.suppress(ResourceNotFound):
            gate.resource_read(caller=caller, patient=patient, resource_type=resource_type, resource_id=fhir_id)
    return len(asks)


class Command(BaseCommand):
    help = "Create the demo users and the demo patient's generated record (idempotent); print the logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--cohort", type=int, default=0, help="also create N research-cohort patients with generated records"
        )
        parser.add_argument(
            "--research",
            action="store_true",
            help=f"also the demo study: approved, {RESEARCH_DEMO_COHORT}+ cohort patients joined, one result released",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = envstr("DEMO_PASSWORD", DEFAULT_DEMO_PASSWORD)
        report = demo_seed(password=password, cohort=max(0, options["cohort"]), research=options["research"])
        roles = dict(DEMO_USERS)
        self.stdout.write(f"Demo logins (password: {password}):")
        for username, role in roles.items():
            state = "created" if username in report.created_users else "already there"
            if username in report.stale_passwords:
                state += ", with another password (DEMO_PASSWORD changed since it was created)"
            imported = report.imported.get(username)
            record = f", record of {imported} resources imported" if imported else ""
            self.stdout.write(f"  {username:<16} {role!s:<11} {state}{record}")
        if report.sharing:
            self.stdout.write(f"  {report.sharing}")
        if report.research:
            self.stdout.write(f"  {report.research}")
        self._phrase_note(report)
        if options["cohort"]:
            cohort_imported = sum(n for name, n in report.imported.items() if name.startswith("demo.cohort."))
            self.stdout.write(f"  cohort: {options['cohort']} patients, {cohort_imported} resources imported now")

    def _phrase_note(self, report: SeedReport) -> None:
        """Where the demo patient's recovery phrase is, and how she restores her key (never the phrase itself)."""
        path = phrase_path()
        if not path.exists():
            return
        made = "made by this seed as her device, registered, and dropped" if report.phrase_written else "registered"
        self.stdout.write(f"  demo.patient's signing key: {made}; the server holds none.")
        self.stdout.write(f"  Her recovery phrase is in {path} (readable by you only).")
        self.stdout.write(
            '  To sign as her: log in as demo.patient, open "Your key", and paste it under'
            ' "Recover your key on this device" ("Recover my key").'
        )
