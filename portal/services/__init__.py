"""The portal's writes. Each composes domain services; none writes patient data itself.

Imports go through records.services.fhir_ingest, grants through consent.services,
erasure through consent.services.patient_record_erase. What is the portal's own is the
sign-in bookkeeping (failed attempts, the optional TOTP device).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from accounts.models import Role, User
from accounts.services import user_create
from audit.models import AccessLogEntry, Outcome
from audit.services import LogEvent, access_log_append
from consent.services import patient_record_erase
from healthledger.errors import ConsentDenied, HealthLedgerError, InvalidFHIR, OutcomeIssue
from healthledger.lib.account_secrets import totp_seed_seal
from portal.models import LoginFailure, Preference, SealedTOTPDevice
from records.fhir.jsonio import DuplicateKey, dumps_exact, loads_exact
from records.ingest import Source
from records.models import Patient
from records.selectors import patient_for_user
from records.services import IngestResult, fhir_ingest, patient_create

logger = logging.getLogger(__name__)

TOTP_SEED_BYTES = 20  # RFC 4226's recommended 160 bits, django-otp's default


# --- accounts -----------------------------------------------------------------------------------


def patient_signup(*, username: str, password: str, first_name: str = "", last_name: str = "", email: str = "") -> User:
    """A new patient account with its (empty, keyed) record, both or neither."""
    with transaction.atomic():
        user = user_create(
            username=username,
            password=password,
            role=Role.PATIENT,
            email=email,
            first_name=first_name,
            last_name=last_name,
        )
        patient_create(user=user)
    return user


def patient_signup_request(
    *, username: str, password: str, email: str, site_url: str, first_name: str = "", last_name: str = ""
) -> User | None:
    """Ask for a patient account; what happens next is told by e-mail only, so sign-up tells no one who exists.

    A free username gets an inactive account with its record, and an e-mail with the link that
    activates it (patient_signup_confirm). A taken one gets nothing but an e-mail to the address
    given, saying the name is taken. The page answers the same either way, after the same
    password-hashing work. Returns the new (inactive) user, or None for a taken name.
    """
    try:
        with transaction.atomic():
            if User.objects.filter(username__iexact=username).exists():
                raise IntegrityError("username taken")
            user = user_create(
                username=username,
                password=password,
                role=Role.PATIENT,
                email=email,
                first_name=first_name,
                last_name=last_name,
                is_active=False,
            )
            # Self-custody from the start: her signing key is made in her browser, never here.
            patient_create(user=user)
            uid = urlsafe_base64_encode(str(user.pk).encode("ascii"))
            token = default_token_generator.make_token(user)
            link = site_url.rstrip("/") + reverse("portal:signup_confirm", args=[uid, token])
            body = SIGNUP_EMAIL.format(link=link, hours=settings.PASSWORD_RESET_TIMEOUT // 3600)
    except IntegrityError:
        make_password(password)  # the hashing a new account costs: the answer's timing tells nothing either
        body = SIGNUP_TAKEN_EMAIL.format(username=username, site=site_url.rstrip("/") + reverse("portal:signup"))
        user = None
    # After the account commits, so the link never points at an account that was rolled back.
    transaction.on_commit(lambda: send_mail(SIGNUP_SUBJECT, body, settings.DEFAULT_FROM_EMAIL, [email]))
    return user


SIGNUP_SUBJECT = "Your HealthLedger account"
SIGNUP_EMAIL = (
    "Hello,\n\nto finish creating your HealthLedger account, open this link within {hours} hours:\n\n{link}\n\n"
    "If you did not ask for an account, ignore this e-mail: nothing happens without the link.\n"
)
SIGNUP_TAKEN_EMAIL = (
    'Hello,\n\nsomeone, perhaps you, tried to create a HealthLedger account named "{username}" with this'
    " address. That name is already taken, so no account was made. Choose another name at:\n\n{site}\n\n"
    "If this was not you, ignore this e-mail.\n"
)


def patient_signup_confirm(*, uidb64: str, token: str) -> User | None:
    """Activate the account a sign-up link names; None when the link is wrong, expired or already used.

    Only an account that was never signed in to is activated here: a link cannot bring back an
    account that was deactivated later (by an administrator, or by erasure).
    """
    try:
        user_id = int(urlsafe_base64_decode(uidb64).decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    with transaction.atomic():
        # Locked: two clicks on the same link activate once.
        user = User.objects.select_for_update().filter(pk=user_id, is_active=False, last_login__isnull=True).first()
        if user is None or not default_token_generator.check_token(user, token):
            return None
        user.is_active = True
        user.save(update_fields=["is_active"])
    return user


def patient_record_ensure(*, user: User) -> Patient:
    """The patient's record, created empty for a patient account made elsewhere (the admin, a script)."""
    with transaction.atomic():
        return patient_for_user(user_id=user.pk) or patient_create(user=user)


# --- what an administrator does to an account ----------------------------------------------------------

ADMIN_CHANGE = "accounts.admin.change"
ADMIN_PASSWORD = "accounts.admin.password"
ADMIN_SECOND_FACTOR_REMOVE = "accounts.admin.second_factor.remove"
ADMIN_ACTIONS = frozenset({ADMIN_CHANGE, ADMIN_PASSWORD, ADMIN_SECOND_FACTOR_REMOVE})


def account_admin_change_log(*, admin: User, user: User, action: str) -> AccessLogEntry | None:
    """Write an administrator's change to a patient's account to her access log, as the administrator's.

    Call it inside the change's own transaction, so the change and its entry commit together: a
    password set in the admin cannot let anyone sign in as the patient without her seeing who
    did it. Accounts without a record (clinicians, staff) have no access log; None then.
    """
    if action not in ADMIN_ACTIONS:
        raise ValueError(f"not an admin action code: {action!r}")
    patient = patient_for_user(user_id=user.pk)
    if patient is None:
        return None
    event = LogEvent(actor=f"user:{admin.pk}", action=action, outcome=Outcome.PERMIT, patient_ref=patient.pk)
    return access_log_append(event=event)


# --- sign-in throttling --------------------------------------------------------------------------------


def _window_start() -> datetime:
    return timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def login_failures_recent(*, username: str, address: str | None) -> int:
    """Failed sign-ins for this username from this address within the window."""
    return LoginFailure.objects.filter(username=username.lower(), address=address, at__gte=_window_start()).count()


def login_is_throttled(*, username: str, address: str | None) -> bool:
    return login_failures_recent(username=username, address=address) >= settings.LOGIN_FAILURE_LIMIT


def login_failure_record(*, username: str, address: str | None) -> None:
    """Count one failed attempt (wrong password or wrong code); old rows are dropped on the way."""
    LoginFailure.objects.create(username=username.lower()[:150], address=address, at=timezone.now())
    LoginFailure.objects.filter(at__lt=_window_start()).delete()
    logger.info("portal sign-in failed")


def login_failures_clear(*, username: str, address: str | None) -> None:
    LoginFailure.objects.filter(username=username.lower(), address=address).delete()


# --- TOTP second factor ----------------------------------------------------------------------------


def totp_device_begin(*, user: User) -> SealedTOTPDevice:
    """An unconfirmed TOTP device to enrol (the same one until confirmed, so a reload keeps the QR code).

    Its seed is stored sealed under the account key: a copy of the database holds no usable second factor.
    """
    device = SealedTOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        seed = secrets.token_bytes(TOTP_SEED_BYTES)
        device = SealedTOTPDevice.objects.create(
            user=user, name="Authenticator app", confirmed=False, key=totp_seed_seal(seed=seed, user_id=user.pk)
        )
    return device


def totp_device_confirm(*, user: User, token: str) -> SealedTOTPDevice | None:
    """Confirm the enrolling device with a code from the app; None when the code is wrong."""
    device = SealedTOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None or not device.verify_token(token):
        return None
    with transaction.atomic():
        SealedTOTPDevice.objects.filter(user=user, confirmed=True).delete()  # one authenticator at a time
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return device


def totp_devices_remove(*, user: User) -> int:
    """Turn the second factor off: every TOTP device of the user goes."""
    removed, _ = SealedTOTPDevice.objects.filter(user=user).delete()
    return removed


def totp_confirmed_device(*, user: User) -> SealedTOTPDevice | None:
    return SealedTOTPDevice.objects.filter(user=user, confirmed=True).first()


# --- import ---------------------------------------------------------------------------------------


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


# --- preferences ------------------------------------------------------------------------------------


def time_zone_valid(name: str) -> bool:
    """An IANA time zone name this machine knows ("" means: follow the browser)."""
    return name == "" or name in _time_zones()


def _time_zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def preference_time_zone_set(*, user: User, time_zone: str) -> Preference:
    """Store the time zone the portal shows this person's times in ("" follows the browser)."""
    if not time_zone_valid(time_zone):
        raise HealthLedgerError("unknown time zone")  # the form offers known names only
    preference, _ = Preference.objects.update_or_create(user=user, defaults={"time_zone": time_zone})
    return preference


# --- erasure ------------------------------------------------------------------------------------------


def record_erase(*, patient: Patient, by: User, revocation_signatures: Mapping[str, str] | None = None) -> Patient:
    """The patient erases her own record: consent.services.patient_record_erase, in its one order.

    `revocation_signatures`: grant id -> her browser's signature revoking it, when she holds her own key.
    """
    if patient.user_id != by.pk:
        raise ConsentDenied("only the patient can erase her record")
    return patient_record_erase(patient=patient, actor=f"user:{by.pk}", revocation_signatures=revocation_signatures)
