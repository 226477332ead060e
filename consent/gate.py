"""THE GATE: the only path from stored ciphertext to plaintext.

Every read of patient data, by the patient, a clinician, a worker or a research run,
comes through here: the policy decision point decides; the decision, permit or deny,
is appended to the access log (a permit in the same transaction as the read, a deny
in a transaction of its own that commits before the caller answers); only a permit
decrypts. A deny looks exactly like a missing resource.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from audit.models import Outcome
from audit.selectors import released_under_grants
from audit.services import LogEvent, access_log_commit, access_log_insert
from consent.break_glass import break_glass_admit
from consent.pdp import (
    Decision,
    GrantRow,
    decide,
    grantee_id_expression,
    grants_from_expression,
    live_grants_expression,
)
from consent.purposes import Action, Purpose
from healthledger.errors import IntegrityFailure, KeyDestroyed, ResourceNotFound
from records import decrypt
from records.logtext import log_text_seal
from records.models import Patient
from records.reindex import index_tokens_rebuild
from records.selectors import (
    SEARCH_LIMIT_MAX,
    RowExtra,
    SearchCriteria,
    StoredVersion,
    patient_locate_by_fhir_id,
    resource_ids_by_column,
    resource_ids_sorted,
    resource_in_categories,
    resource_matching,
    resource_search_stored,
    stored_page,
    stored_page_of_type,
    stored_version_get,
    stored_version_locate,
    stored_versions_by_ids,
    stored_versions_current,
)

logger = logging.getLogger(__name__)

PURPOSE_PATIENT_REQUEST = Purpose.PATRQT.value


@dataclass(frozen=True)
class Caller:
    """Who asks, why, and on whose behalf: what every gate function needs to decide and to log."""

    actor: User | None
    purpose: str = PURPOSE_PATIENT_REQUEST
    reason: str = ""  # the written reason break-glass needs ...
    break_glass_code: str = ""  # ... with its code (consent.purposes.BreakGlassCode)
    # A person signed in for this request (an authorization-code token), not a backend service.
    interactive: bool = False
    job_id: str = ""  # set when a worker acts for a job
    # The one patient this caller may reach (a SMART token's launch patient); None: whoever the grants allow.
    patient_context: uuid.UUID | None = None

    @property
    def ref(self) -> str:
        if self.actor is None:
            return "anonymous"
        return f"job:{self.job_id}" if self.job_id else f"user:{self.actor.pk}"


@dataclass(frozen=True)
class DeferredCaller:
    """A caller that the read's own statement identifies, rather than one known before it.

    The API's bearer token: asking for the token's row inside the statement that finds the
    resource saves every read a round trip. `identity` is a scalar SQL expression (the token's
    row) whose value `resolve` turns into the Caller, or raises (unknown or expired token,
    scopes that do not cover the read, a bad purpose); `actor_id` names the acting user's id,
    for the grants fetched alongside. `resolve` gets None when the resource was not found, so
    that it still authenticates first: a bad token is refused before a missing resource is.
    """

    identity: RowExtra
    actor_id: RowExtra
    resolve: Callable[[object], Caller]


@dataclass(frozen=True)
class SearchPage:
    references: list[str]
    bodies: list[bytes]
    # How many resources in all match and the caller may see (resource_search_counted); None when not counted.
    total: int | None = None
    # Matches left out because their stored bytes failed the integrity check (each logged as records.integrity).
    failed: tuple[str, ...] = ()


def _decide(
    caller: Caller,
    patient: Patient,
    action: str,
    resource_types: Sequence[str],
    *,
    at: datetime | None = None,
    grants: Sequence[GrantRow] | None = None,
) -> Decision:
    decision = decide(
        actor=caller.actor,
        patient_id=patient.pk,
        patient_user_id=patient.user_id,
        action=action,
        resource_types=resource_types,
        purpose=caller.purpose,
        reason=caller.reason,
        break_glass_code=caller.break_glass_code,
        interactive=caller.interactive,
        at=at,
        grants=grants,
        patient_context=caller.patient_context,
    )
    if decision.break_glass and caller.actor is not None:
        # The request may break the glass; whether this record, now, may be opened is the episode's rule.
        admission = break_glass_admit(
            clinician=caller.actor, patient=patient, code=caller.break_glass_code, reason=caller.reason, at=at
        )
        if admission.episode is None:
            return Decision(permit=False, basis=admission.refused)
    return decision


def _event(
    caller: Caller, patient: Patient, action: str, decision: Decision, *, query: str = "", **details: object
) -> LogEvent:
    # What a query or a reason says about the patient is sealed under a key erasure destroys;
    # the log's hashes cover the sealed form, so it verifies after the words are gone.
    return LogEvent(
        actor=caller.ref,
        action=action,
        outcome=Outcome.PERMIT if decision.permit else Outcome.DENY,
        patient_ref=patient.pk,
        purpose=caller.purpose,
        grant_ref=decision.grant_id,
        job_id=caller.job_id,
        query=log_text_seal(patient_id=patient.pk, text=query),
        reason=log_text_seal(patient_id=patient.pk, text=caller.reason if decision.break_glass else ""),
        break_glass=decision.break_glass,
        **details,  # type: ignore[arg-type]
    )


def access_log_text(*, patient_id: uuid.UUID | None, text: str) -> str:
    """An access-log query or reason in words, for the patient's log and the steward; "[erased]" after erasure."""
    return decrypt.log_text_open(patient_id=patient_id, text=text)


def _deny(
    caller: Caller, patient: Patient, action: str, decision: Decision, *, query: str = "", **details: object
) -> ResourceNotFound:
    # Its own transaction, committed before the caller answers, so a deny is never rolled back with the request.
    access_log_commit(event=_event(caller, patient, action, decision, query=query, **details))
    logger.info("gate deny action=%s basis=%s", action, decision.basis)
    return ResourceNotFound("resource not found")


def _open(stored: StoredVersion, patient: Patient, caller: Caller | None = None) -> bytes:
    """Decrypt one stored version; on an integrity failure (flipped byte, moved ciphertext, rolled-back version)
    write a `records.integrity` entry to the patient's access log, in its own transaction, and raise."""
    try:
        return decrypt.stored_version_decrypt(stored)
    except IntegrityFailure:
        logger.error("integrity failure reading a stored version of patient %s", patient.pk)
        _integrity_entry(caller, patient, (stored.reference,))
        raise


def _integrity_entry(caller: Caller | None, patient: Patient, references: Sequence[str]) -> None:
    # Committed on its own: the read that found it may roll back or answer an error, the finding stays, and the
    # patient sees it in their log. Outcome deny: nothing of these versions was served.
    access_log_commit(
        event=LogEvent(
            actor=caller.ref if caller is not None else "system:integrity",
            action="records.integrity",
            outcome=Outcome.DENY,
            patient_ref=patient.pk,
            purpose=caller.purpose if caller is not None else "",
            job_id=caller.job_id if caller is not None else "",
            resource_ids=tuple(references),
        )
    )


def _open_each(stored: Sequence[StoredVersion], patient: Patient) -> tuple[list[StoredVersion], list[bytes], list[str]]:
    """Decrypt several versions; one that fails its integrity check fails alone.

    Returns the versions opened, their bodies, and the references that failed; the caller logs those
    (`_integrity_entry`) where the entry cannot be rolled back with a failing request.
    """
    opened: list[StoredVersion] = []
    bodies: list[bytes] = []
    failed: list[str] = []
    for item, body in zip(stored, decrypt.stored_versions_decrypt_each(stored), strict=True):
        if body is None:
            failed.append(item.reference)
            continue
        opened.append(item)
        bodies.append(body)
    if failed:
        logger.error("integrity failure on %d stored version(s) of patient %s", len(failed), patient.pk)
    return opened, bodies, failed


def _integrity_raise(caller: Caller, patient: Patient, failed: Sequence[str]) -> IntegrityFailure:
    """Outside the read's transaction: the finding is committed, then the read fails as a whole."""
    _integrity_entry(caller, patient, failed)
    return IntegrityFailure(f"{len(failed)} stored version(s) failed their integrity check")


def _narrowed(decision: Decision, patient: Patient, resource_type: str, resource_id: str) -> Decision:
    """A permit under a grant narrowed to categories holds only for a resource indexed under one of them."""
    if decision.permit and decision.categories:
        in_scope = resource_in_categories(
            patient=patient, resource_type=resource_type, resource_id=resource_id, categories=decision.categories
        )
        if not in_scope:
            return Decision(permit=False, basis="category-not-granted", grant_id=decision.grant_id)
    if decision.permit and decision.output_grants:
        released = released_under_grants(
            patient_ref=patient.pk, grant_refs=decision.output_grants, resource_type=resource_type
        )
        if resource_id not in released:
            return Decision(permit=False, basis="not-own-job-output", grant_id=decision.grant_id)
        return replace(decision, grant_id=released[resource_id])
    return decision


def _outputs_only(decision: Decision, patient: Patient, resource_type: str, criteria: SearchCriteria) -> SearchCriteria:
    """A search under a run-model grant's permit sees only what the jobs run under those grants released."""
    released = released_under_grants(
        patient_ref=patient.pk, grant_refs=decision.output_grants, resource_type=resource_type
    )
    ids = tuple(i for i in (criteria.ids or sorted(released)) if i in released)
    # No released id left: an id that no resource has (ids are 1-64 of A-Za-z0-9-.), so nothing matches.
    return replace(criteria, ids=ids or ("~none~",))


def _read_permitted(caller: Caller, patient: Patient, decision: Decision, stored: StoredVersion) -> bytes:
    """Decrypt in memory, commit the permit entry, and only then hand the bytes out.

    The order is the guarantee: a version that fails to decrypt is never logged as read, and no
    byte leaves before its entry is committed. One autocommit INSERT does it, without the
    BEGIN/COMMIT round trips a transaction around the read would add to every request.
    """
    body = _open(stored, patient, caller)
    access_log_commit(event=_event(caller, patient, "records.read", decision, resource_ids=(stored.reference,)))
    return body


def resource_read(
    *,
    caller: Caller,
    patient: Patient,
    resource_type: str,
    resource_id: str,
    version: int | None = None,
    action: str = Action.READ,
) -> bytes:
    """One resource's stored canonical JSON (current version, or `version`), decided and logged.

    Raises ResourceNotFound when denied or missing (indistinguishable), KeyDestroyed
    when the record was erased, IntegrityFailure when the stored bytes were tampered with.
    """
    asked = f"{resource_type}/{resource_id}" + (f"/_history/{version}" if version is not None else "")
    decision = _narrowed(_decide(caller, patient, action, [resource_type]), patient, resource_type, resource_id)
    if not decision.permit:
        raise _deny(caller, patient, "records.read", decision, resource_ids=(asked,))
    stored = stored_version_get(patient=patient, resource_type=resource_type, resource_id=resource_id, version=version)
    if stored is None:
        if Patient.objects.filter(pk=patient.pk, erased_at__isnull=False).exists():
            # The caller may see this record (decided above): it is gone, not missing.
            raise KeyDestroyed("this patient's record was erased; its data can never be decrypted again")
        # Nothing was read, so nothing is logged as read; the caller sees what a stranger sees.
        raise ResourceNotFound("resource not found")
    return _read_permitted(caller, patient, decision, stored)


@dataclass(frozen=True)
class ReadResult:
    body: bytes
    version: int
    created_at: datetime


def resource_read_by_id(
    *,
    caller: Caller | DeferredCaller,
    resource_type: str,
    resource_id: str,
    version: int | None = None,
    action: str = Action.READ,
) -> ReadResult:
    """Type/id (or that version of it) wherever it is stored: the API's read, where only the row names the patient.

    One query finds the version with its owner, its keys and the caller's live grants on that
    owner (and, for a DeferredCaller, who the caller is), then the same decision, narrowing,
    logging and decryption as resource_read. A missing resource and a denied one raise the same
    ResourceNotFound; only the deny is logged (a missing one names no patient).
    """
    now = timezone.now()
    identity: tuple[RowExtra, ...]
    if isinstance(caller, DeferredCaller):
        identity, grantee = (caller.identity,), caller.actor_id
    else:  # an anonymous caller has no grants (and is denied before they are looked at)
        identity, grantee = (), grantee_id_expression(caller.actor.pk if caller.actor is not None else None)
    located = stored_version_locate(
        resource_type=resource_type,
        resource_id=resource_id,
        version=version,
        extras=(*identity, live_grants_expression(grantee=grantee, at=now)),
    )
    if isinstance(caller, DeferredCaller):
        caller = caller.resolve(located.extras[0] if located is not None else None)
    if located is None:
        raise ResourceNotFound("resource not found")
    grants = grants_from_expression(located.extras[-1], purpose=caller.purpose)
    patient = Patient.from_db(connection.alias, ["id", "user_id"], [located.stored.patient_id, located.patient_user_id])
    asked = f"{resource_type}/{resource_id}" + (f"/_history/{version}" if version is not None else "")
    decision = _decide(caller, patient, action, [resource_type], at=now, grants=grants)
    decision = _narrowed(decision, patient, resource_type, resource_id)
    if not decision.permit:
        raise _deny(caller, patient, "records.read", decision, resource_ids=(asked,))
    body = _read_permitted(caller, patient, decision, located.stored)
    return ReadResult(body=body, version=located.stored.version, created_at=located.created_at)


def resource_search(
    *,
    caller: Caller,
    patient: Patient,
    resource_type: str,
    code: str | None = None,
    category: str | None = None,
    date_ge: date | None = None,
    date_le: date | None = None,
    limit: int = 100,
    offset: int = 0,
    query: str = "",
    action: str = Action.READ,
) -> SearchPage:
    """One page of the patient's resources of a type matching the criteria, narrowed to what the caller may see.

    The narrowing happens before the search runs, so a denied caller learns nothing,
    not even a count. `query` is the request's own text, logged as asked.
    """
    decision = _decide(caller, patient, action, [resource_type])
    if decision.output_grants:
        # Narrowing to a job's outputs is resource_search_counted's; this search does not take ids.
        decision = Decision(permit=False, basis="not-own-job-output", grant_id=decision.grant_id)
    if not decision.permit:
        raise _deny(caller, patient, "records.search", decision, query=query)
    with transaction.atomic():
        stored = resource_search_stored(
            patient=patient,
            resource_type=resource_type,
            code=code,
            category=category,
            date_ge=date_ge,
            date_le=date_le,
            categories_any=decision.categories,
            limit=limit,
            offset=offset,
        )
        opened, bodies, failed = _open_each(stored, patient)
        references = [item.reference for item in opened]
        if not failed:
            access_log_insert(
                event=_event(caller, patient, "records.search", decision, resource_ids=references, query=query)
            )
    if failed:  # nothing served, nothing logged as read; the integrity entry is committed
        raise _integrity_raise(caller, patient, failed)
    return SearchPage(references=references, bodies=bodies)


@dataclass(frozen=True)
class SearchTarget:
    """A record found by its Patient id, with the caller's live grants on it fetched in the same statement."""

    patient: Patient
    actor_id: int | None
    purpose: str
    at: datetime
    grants: tuple[GrantRow, ...]


def search_target(*, caller: Caller, fhir_id: str) -> SearchTarget | None:
    """The record a search names, and (for resource_search_counted to decide on) the caller's grants on it.

    One statement instead of two: a search's patient lookup and its decision's grant lookup. None when no
    record's Patient has this id (the API then answers as for a patient the caller may not see).
    """
    now = timezone.now()
    actor_id = caller.actor.pk if caller.actor is not None else None
    expression = live_grants_expression(grantee=grantee_id_expression(actor_id), at=now)
    found = patient_locate_by_fhir_id(fhir_id=fhir_id, extras=(expression,))
    if found is None:
        return None
    patient, (grants,) = found
    return SearchTarget(
        patient, actor_id, caller.purpose, now, tuple(grants_from_expression(grants, purpose=caller.purpose))
    )


def _page(
    patient: Patient,
    resource_type: str,
    criteria: SearchCriteria,
    categories: Sequence[str],
    sort: str,
    page: tuple[int, int],
) -> tuple[list[StoredVersion], int]:
    """The sealed versions of one page (offset, limit) of a search, and how many match in all."""
    offset, limit = page
    if limit and not sort and criteria == SearchCriteria() and not categories:
        # No filter at all (the commonest search): one fixed, prepared statement, nothing compiled.
        return stored_page_of_type(patient=patient, resource_type=resource_type, limit=limit, offset=offset)
    matching = resource_matching(
        patient=patient, resource_type=resource_type, criteria=criteria, categories_any=categories
    )
    if not limit:
        return [], matching.count()
    if not sort:
        # Storage order: the page and the total in one statement.
        return stored_page(matching=matching, limit=limit, offset=offset)
    total = matching.count()
    if "," in sort or sort.lstrip("-") == "date":
        # Ordered by blind-index sort tokens and clear columns: nothing but the page is ever decrypted.
        ordered = (
            resource_ids_sorted(patient=patient, matching=matching, keys=sort.split(",")) if offset < total else []
        )
        return stored_versions_by_ids(ordered[offset : offset + limit]), total
    # Row columns kept in the clear (_lastUpdated, _id): ordered and sliced by the database.
    return stored_versions_by_ids(resource_ids_by_column(matching=matching, sort=sort, page=(offset, limit))), total


def resource_search_counted(
    *,
    caller: Caller,
    patient: Patient,
    resource_type: str,
    criteria: SearchCriteria,
    sort: str = "",
    limit: int = 50,
    offset: int = 0,
    query: str = "",
    action: str = Action.READ,
    partial: bool = False,
    target: SearchTarget | None = None,
) -> SearchPage:
    """One page of a search, in a stable order, with the total of what the caller may see.

    A version on the page that fails its integrity check is logged as `records.integrity`. With `partial`
    the page carries the rest and names the failed ones in `failed` (the FHIR search answers with an
    OperationOutcome warning); without it the search fails as a whole with IntegrityFailure.

    The grant's narrowing (categories) is part of the query before it runs, so neither the
    page nor `total` counts anything the caller may not see; a deny raises ResourceNotFound
    and is logged. `sort` is "" (storage order) or comma-separated keys, each "date" (the
    resource's clinical date; undated last), "_lastUpdated" or "_id", "-" first for descending,
    then id. `limit` 0 counts only. The page's references are logged
    with `query`, in the read's transaction. `target` (search_target's, for this caller and patient)
    saves the decision its own lookup of the grants.
    """
    actor_id = caller.actor.pk if caller.actor is not None else None
    fetched = target is not None and (target.patient.pk, target.actor_id, target.purpose) == (
        patient.pk,
        actor_id,
        caller.purpose,
    )
    if target is not None and fetched:
        decision = _decide(caller, patient, action, [resource_type], at=target.at, grants=target.grants)
    else:
        decision = _decide(caller, patient, action, [resource_type])
    if not decision.permit:
        raise _deny(caller, patient, "records.search", decision, query=query)
    limit = max(0, min(limit, SEARCH_LIMIT_MAX))
    offset = max(0, offset)
    if decision.output_grants:
        criteria = _outputs_only(decision, patient, resource_type, criteria)
    with transaction.atomic():
        stored, total = _page(patient, resource_type, criteria, decision.categories, sort, (offset, limit))
        # Decrypted before the entry is written: the entry names exactly what is served.
        opened, bodies, failed = _open_each(stored, patient)
        references = [item.reference for item in opened]
        if not failed or partial:
            access_log_insert(
                event=_event(caller, patient, "records.search", decision, resource_ids=references, query=query)
            )
        if failed and partial:
            _integrity_entry(caller, patient, failed)
    if failed and not partial:
        raise _integrity_raise(caller, patient, failed)
    return SearchPage(references=references, bodies=bodies, total=total, failed=tuple(failed))


def record_export(*, caller: Caller, patient: Patient) -> bytes:
    """The current version of every resource of the record as one FHIR collection Bundle, logged as one entry.

    Only the patient exports a whole record: a grant never covers "everything, in one go".
    """
    decision = _decide(caller, patient, Action.READ, ["*"])
    if decision.basis != "own-record":
        decision = Decision(permit=False, basis=decision.basis if not decision.permit else "export-own-record-only")
    if not decision.permit:
        raise _deny(caller, patient, "records.export", decision)
    with transaction.atomic():
        if Patient.objects.filter(pk=patient.pk, erased_at__isnull=False).exists():
            raise KeyDestroyed("this patient's record was erased; its data can never be decrypted again")
        # One version that fails its integrity check is left out, logged, and named in the Bundle.
        stored, bodies, failed = _open_each(stored_versions_current(patient=patient), patient)
        if failed:
            _integrity_entry(caller, patient, failed)
        access_log_insert(
            event=_event(caller, patient, "records.export", decision, resource_ids=[s.reference for s in stored])
        )
    # Built from the stored bytes without parsing them; type and id are FHIR ids, safe inside a JSON string.
    timestamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    parts = [
        b'{"fullUrl":"' + f"{item.resource_type}/{item.fhir_id}".encode("ascii") + b'","resource":' + body + b"}"
        for item, body in zip(stored, bodies, strict=True)
    ]
    if failed:
        # The export says what it left out, in the Bundle itself: an OperationOutcome entry.
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "warning",
                    "code": "exception",
                    "diagnostics": f"{len(failed)} stored version(s) failed their integrity check and were "
                    f"left out: {', '.join(failed)}",
                }
            ],
        }
        parts.append(b'{"resource":' + json.dumps(outcome, separators=(",", ":")).encode() + b"}")
    entries = b",".join(parts)
    head = f'{{"resourceType":"Bundle","type":"collection","timestamp":"{timestamp}","entry":['.encode("ascii")
    return head + entries + b"]}"


def record_index_rebuild(*, patient: Patient) -> int:
    """Rebuild a record's blind index from its current versions (an operator's maintenance); the token count.

    The plaintext never leaves this function: it goes from decryption to records.reindex and is
    dropped; the access log says the record was read to be reindexed, by whom ("system:reindex").
    """
    with transaction.atomic():
        locked = Patient.objects.select_for_update().filter(pk=patient.pk, erased_at__isnull=True).first()
        if locked is None:  # erased: nothing to decrypt, and its index was deleted with the key
            return 0
        stored = stored_versions_current(patient=locked)
        bodies = decrypt.stored_versions_decrypt(stored)
        count = index_tokens_rebuild(patient=locked, stored=stored, bodies=bodies)
        access_log_insert(
            event=LogEvent(
                actor="system:reindex",
                action="records.reindex",
                outcome=Outcome.PERMIT,
                patient_ref=locked.pk,
                purpose=Purpose.HOPERAT.value,
                resource_ids=[item.reference for item in stored],
            )
        )
    return count


def patient_signing_key(*, patient: Patient) -> bytes:
    """The patient's chain signing key, for consent services to sign the patient's own grants and revocations.

    Not patient data and not logged as a read: what it signs is logged by the service that signs.
    """
    fresh = Patient.objects.only("id", "wrapped_key", "master_key_id", "wallet_ciphertext").get(pk=patient.pk)
    return decrypt.patient_signing_key(fresh)
