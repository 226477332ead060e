"""Searches: a page of a patient's resources, narrowed to what the caller may see before the query runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from django.db import transaction
from django.utils import timezone

from audit.services import access_log_commit, access_log_insert
from consent.categories import categories_for
from consent.gate.caller import Caller, DeferredCaller
from consent.gate.decisions import _decide, _deny, _event, _outputs_only
from consent.gate.opening import _integrity_entry, _integrity_raise, _open_each
from consent.pdp import (
    Decision,
    GrantRow,
    grantee_id_expression,
    grants_from_expression,
    live_grants_expression,
)
from consent.purposes import Action
from records.models import Patient
from records.selectors import (
    SEARCH_LIMIT_MAX,
    RowExtra,
    SearchCriteria,
    StoredVersion,
    TypePage,
    patient_locate_with_type_page,
    resource_ids_by_column,
    resource_ids_sorted,
    resource_matching,
    resource_search_stored,
    stored_page,
    stored_page_of_type,
    stored_versions_by_ids,
)


@dataclass(frozen=True)
class SearchPage:
    references: list[str]
    bodies: list[bytes]
    # How many resources in all match and the caller may see (resource_search_counted); None when not counted.
    total: int | None = None
    # Matches left out because their stored bytes failed the integrity check (each logged as records.integrity).
    failed: tuple[str, ...] = ()


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
            categories_any=categories_for(decision.categories, resource_type),
            limit=limit,
            offset=offset,
        )
        opened, bodies, failed = _open_each(stored, patient)
        references = StoredVersion.references(opened)
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
    # The page of a whole type read with the record (search_target's `page`), for resource_search_counted
    # to serve if that is the page the search asks for once decided; otherwise it is dropped unopened.
    page: TypePage | None = None


def search_target(
    *, caller: Caller | DeferredCaller, fhir_id: str, page: tuple[str, int, int] | None = None
) -> SearchTarget | None:
    """The record a search names, and (for resource_search_counted to decide on) the caller's grants on it.

    One statement does the work of two: the search's patient lookup and its decision's grant lookup; for
    a DeferredCaller (the API's bearer token) that of a third, the token check, resolved before this
    returns, whether or not the record exists, as a read's is. None when no record's Patient has this id
    (the API then answers as for a patient the caller may not see). `page` (resource type, limit, offset, as
    asked): the page of that whole type the search will read if its criteria stay empty, read in the same
    statement, and only when the caller holds a live grant on the record (patient_locate_with_type_page).
    """
    now = timezone.now()
    identity: tuple[RowExtra, ...]
    if isinstance(caller, DeferredCaller):
        identity, grantee = (caller.identity,), caller.actor_id
    else:
        identity, grantee = (), grantee_id_expression(caller.actor.pk if caller.actor is not None else None)
    extras = (*identity, live_grants_expression(grantee=grantee, at=now))
    resource_type, limit, offset = page or ("", 0, 0)
    offset, limit = _bounded(offset, limit)  # as resource_search_counted bounds its page, so the two compare equal
    found = patient_locate_with_type_page(
        fhir_id=fhir_id, extras=extras, resource_type=resource_type, limit=limit, offset=offset
    )
    if isinstance(caller, DeferredCaller):
        caller = caller.resolve(found[1][0] if found is not None else None)
    if found is None:
        return None
    patient, values, read = found
    actor_id = caller.actor.pk if caller.actor is not None else None
    grants = grants_from_expression(values[-1], purpose=caller.purpose)
    return SearchTarget(patient, actor_id, caller.purpose, now, tuple(grants), read)


def _bounded(offset: int, limit: int) -> tuple[int, int]:
    """A search page's (offset, limit) as it is read: at most SEARCH_LIMIT_MAX, neither below 0."""
    return max(0, offset), max(0, min(limit, SEARCH_LIMIT_MAX))


def _page(
    patient: Patient,
    resource_type: str,
    criteria: SearchCriteria,
    categories: Sequence[str],
    sort: str,
    page: tuple[int, int],
    read: TypePage | None = None,
) -> tuple[list[StoredVersion], int]:
    """The sealed versions of one page (offset, limit) of a search, and how many match in all.

    `read`: a page of a whole type already read with the record (search_target), served if it is this one.
    """
    offset, limit = page
    if limit and not sort and criteria == SearchCriteria() and not categories:
        # No filter at all (the commonest search): one fixed, prepared statement, nothing compiled.
        if read is not None and (read.resource_type, read.limit, read.offset) == (resource_type, limit, offset):
            return read.stored, read.total
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
    offset, limit = _bounded(offset, limit)
    if decision.output_grants:
        criteria = _outputs_only(decision, patient, resource_type, criteria)
    narrowing = categories_for(decision.categories, resource_type)
    read = target.page if target is not None and fetched else None
    stored, total = _page(patient, resource_type, criteria, narrowing, sort, (offset, limit), read)
    # Decrypted before the entry is written: the entry names exactly what is served.
    opened, bodies, failed = _open_each(stored, patient)
    if failed and not partial:
        raise _integrity_raise(caller, patient, failed)
    if failed:  # the finding first: should its entry fail, nothing is served and no read is logged
        _integrity_entry(caller, patient, failed)
    references = StoredVersion.references(opened)
    # As a single read does: decrypted in memory, the entry committed, then returned. No BEGIN and COMMIT
    # around the page: reading takes no lock and writes nothing, its statements see what READ COMMITTED
    # shows them inside a transaction too, and the entry is one autocommitted INSERT (durable when it
    # returns; inside a caller's transaction, committed with it). Two round trips fewer per search.
    access_log_commit(event=_event(caller, patient, "records.search", decision, resource_ids=references, query=query))
    return SearchPage(references=references, bodies=bodies, total=total, failed=tuple(failed))
