"""Reconciling the database with the chain: grants, revocations and access-log anchors.

The chain is the record of what patients signed and what was anchored; the database is its mirror plus
the outbox of writes on their way. Every difference is reported; what can be repaired safely is:

- the chain has a grant the database holds as pending or failed (and no write is in flight): mark it
  recorded with the chain's transaction;
- the database believes a grant is on chain and the chain does not have it: queue the grant again when
  the outbox holds no row for it (a settled row cannot be resent from here; reported as such);
- a grant the patient revoked on chain that the database still honours: mark it revoked (the chain only
  accepts a revocation the patient signed; this repair can only ever deny more);
- a grant revoked in the database and active on chain: queue the revocation unless one is in flight;
- a pending grant whose outbox write failed: mark it failed; one with no outbox row at all: queue it;
- an anchor the chain has that its row holds as pending (nothing in flight): mark it anchored; a
  pending anchor the chain does not have and nothing is sending: mark it failed, so the next
  anchoring run covers its range again.

Not repairable, only reported: a grant whose window on chain differs from the database's, a grant or an
anchor on chain the database does not know, an anchor marked anchored that the chain does not have.
Writes still in the outbox (pending or sent) are not differences: they are counted as in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from audit.anchoring import anchor_confirmed, anchor_failed
from audit.chain_check import ChainAnchor, chain_anchors
from audit.models import AccessLogAnchor, AnchorStatus
from consent.key_reconcile import registered_keys_compare
from consent.models import Grant, GrantStatus
from consent.services import _chain_payload
from ledger.client import ChainClient, GrantEvent, GrantState, chain_client
from ledger.models import OutboxMessage, OutboxStatus
from ledger.outbox import outbox_enqueue, outbox_recheck
from ledger.selectors import deployment_current

logger = logging.getLogger(__name__)

_IN_FLIGHT = (OutboxStatus.PENDING, OutboxStatus.SENT)


@dataclass(frozen=True)
class Difference:
    """One way the database and the chain disagree, and what was (or, in a dry run, would be) done about it."""

    subject: str
    detail: str
    repair: str = ""  # empty: nothing this command can do
    repaired: bool = False

    def describe(self, *, dry_run: bool = False) -> str:
        if not self.repair:
            outcome = "not repairable here"
        elif self.repaired:
            outcome = f"repaired: {self.repair}"
        else:
            outcome = f"{'would repair' if dry_run else 'not repaired'}: {self.repair}"
        return f"{self.subject}: {self.detail} -> {outcome}"


@dataclass
class ReconcileReport:
    dry_run: bool
    grants_checked: int = 0
    keys_checked: int = 0
    anchors_checked: int = 0
    in_flight: int = 0
    differences: list[Difference] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # writes the chain has not mined yet, worth naming

    @property
    def remaining(self) -> list[Difference]:
        return [d for d in self.differences if not d.repaired]

    def summary(self) -> str:
        repaired = len(self.differences) - len(self.remaining)
        return (
            f"reconcile: {len(self.differences)} difference(s), {repaired} repaired, {len(self.remaining)} remaining; "
            f"{self.in_flight} write(s) in flight; checked {self.grants_checked} grant(s), {self.keys_checked} "
            f"key(s) and {self.anchors_checked} anchor(s){' (dry run: nothing changed)' if self.dry_run else ''}"
        )


class _Outbox:
    """The outbox rows that matter here, read once: (kind, ref) -> status."""

    def __init__(self) -> None:
        self.status = {
            (kind, ref): status for kind, ref, status in OutboxMessage.objects.values_list("kind", "ref", "status")
        }

    def in_flight(self, kind: str, ref: str) -> bool:
        return self.status.get((kind, ref)) in _IN_FLIGHT


class _Run:
    def __init__(self, client: ChainClient, report: ReconcileReport) -> None:
        self.client = client
        self.report = report
        self.outbox = _Outbox()

    def found(self, subject: str, detail: str, repair: str = "", action: Callable[[], bool] | None = None) -> None:
        """Record a difference; run `action` (returns True when it repaired) unless this is a dry run."""
        repaired = False
        if repair and action is not None and not self.report.dry_run:
            repaired = action()
        self.report.differences.append(Difference(subject, detail, repair, repaired))


# --- Grants ---------------------------------------------------------------------------------------


def _mark_recorded(grant_id: str, event: GrantEvent) -> bool:
    with transaction.atomic():
        # Same lock as grant_revoke: a revocation landing now must not be overwritten with "recorded".
        grant = Grant.objects.select_for_update().get(pk=grant_id)
        if grant.status not in (GrantStatus.PENDING, GrantStatus.FAILED):
            return False
        grant.status, grant.tx_hash, grant.block_number = GrantStatus.RECORDED, event.tx, event.block
        grant.recorded_at = grant.recorded_at or timezone.now()
        grant.save(update_fields=["status", "tx_hash", "block_number", "recorded_at"])
    return True


def _set_chain_tx(grant_id: str, event: GrantEvent) -> bool:
    Grant.objects.filter(pk=grant_id).update(tx_hash=event.tx, block_number=event.block)
    return True


def _mark_revoked(grant_id: str, event: GrantEvent | None) -> bool:
    with transaction.atomic():
        grant = Grant.objects.select_for_update().get(pk=grant_id)
        if grant.status == GrantStatus.REVOKED:
            return False
        grant.status, grant.revoked_at = GrantStatus.REVOKED, timezone.now()
        if event is not None:
            grant.revocation_tx_hash, grant.revocation_block_number = event.tx, event.block
        grant.save(update_fields=["status", "revoked_at", "revocation_tx_hash", "revocation_block_number"])
    return True


def _set_revocation_tx(grant_id: str, event: GrantEvent) -> bool:
    Grant.objects.filter(pk=grant_id).update(revocation_tx_hash=event.tx, revocation_block_number=event.block)
    return True


def _mark_failed(grant_id: str) -> bool:
    return bool(Grant.objects.filter(pk=grant_id, status=GrantStatus.PENDING).update(status=GrantStatus.FAILED))


def _enqueue(run: _Run, kind: str, grant: Grant, signature: str) -> bool:
    """Queue a grant or revocation write. Only when the outbox has no row for it: a settled row would be returned
    as it is (the outbox never sends one write twice), which repairs nothing."""
    if (kind, grant.id) in run.outbox.status:
        return False
    with transaction.atomic():
        outbox_enqueue(kind=kind, ref=grant.id, payload=_chain_payload(grant, signature))
    run.outbox.status[(kind, grant.id)] = OutboxStatus.PENDING
    return True


def _window(grant: Grant) -> tuple[int, int]:
    return int(grant.not_before.timestamp()), int(grant.not_after.timestamp())


def _grant_on_chain(run: _Run, grant: Grant, event: GrantEvent, state: GrantState, revoked: GrantEvent | None) -> None:
    subject = f"grant {grant.id}"
    if (state.not_before, state.not_after) != _window(grant):
        db, on_chain = _window(grant), (state.not_before, state.not_after)
        run.found(subject, f"window differs: database {db[0]}..{db[1]}, chain {on_chain[0]}..{on_chain[1]}")
    if grant.status in (GrantStatus.PENDING, GrantStatus.FAILED):
        if run.outbox.in_flight("grant", grant.id):
            run.report.in_flight += 1
        else:
            run.found(
                subject,
                f"on chain (tx {event.tx}), {grant.status} in the database",
                "marked recorded with the chain's transaction",
                lambda: _mark_recorded(grant.id, event),
            )
            grant.status = GrantStatus.RECORDED  # what the rest of this check should compare with
    elif grant.tx_hash != event.tx:
        run.found(
            subject,
            f"recorded on chain in tx {event.tx}, the database says {grant.tx_hash or 'no tx'}",
            "took the chain's transaction",
            lambda: _set_chain_tx(grant.id, event),
        )
    _revocation(run, grant, state, revoked)


def _revocation(run: _Run, grant: Grant, state: GrantState, revoked: GrantEvent | None) -> None:
    subject = f"grant {grant.id}"
    if state.revoked and grant.status != GrantStatus.REVOKED:
        run.found(
            subject,
            f"revoked on chain{f' (tx {revoked.tx})' if revoked else ''}, {grant.status} in the database",
            "marked revoked (the patient signed the revocation)",
            lambda: _mark_revoked(grant.id, revoked),
        )
    elif grant.status == GrantStatus.REVOKED and not state.revoked:
        if run.outbox.in_flight("revoke", grant.id):
            run.report.in_flight += 1
        elif not grant.revocation_signature:
            run.found(subject, "revoked in the database, active on chain, and no revocation signature is stored")
        elif ("revoke", grant.id) in run.outbox.status:
            settled = run.outbox.status[("revoke", grant.id)]
            run.found(
                subject, f"revoked in the database, active on chain; the outbox settled the revocation as {settled}"
            )
        else:
            run.found(
                subject,
                "revoked in the database, active on chain",
                "queued the revocation",
                lambda: _enqueue(run, "revoke", grant, grant.revocation_signature),
            )
    elif (
        state.revoked
        and revoked is not None
        and grant.revocation_tx_hash != revoked.tx
        and not run.outbox.in_flight("revoke", grant.id)
    ):
        run.found(
            subject,
            f"revocation on chain in tx {revoked.tx}, the database says {grant.revocation_tx_hash or 'no tx'}",
            "took the chain's transaction",
            lambda: _set_revocation_tx(grant.id, revoked),
        )


def _grant_off_chain(run: _Run, grant: Grant) -> None:
    subject = f"grant {grant.id}"
    if run.outbox.in_flight("grant", grant.id):
        run.report.in_flight += 1
        return
    settled = run.outbox.status.get(("grant", grant.id))
    believed_on_chain = grant.status == GrantStatus.RECORDED or bool(grant.tx_hash)
    if believed_on_chain:
        if settled is None:
            run.found(
                subject,
                f"{grant.status} in the database (tx {grant.tx_hash or 'none'}), unknown on chain",
                "queued the grant again",
                lambda: _enqueue(run, "grant", grant, grant.signature),
            )
        else:
            run.found(
                subject,
                f"{grant.status} in the database (tx {grant.tx_hash or 'none'}), unknown on chain; "
                f"the outbox settled its write as {settled}, so it cannot be resent from here",
            )
    elif grant.status == GrantStatus.PENDING:
        if settled == OutboxStatus.FAILED:
            run.found(
                subject, "pending, but the chain refused its write", "marked failed", lambda: _mark_failed(grant.id)
            )
        elif settled is None:
            run.found(
                subject,
                "pending with no write on its way to the chain",
                "queued the grant",
                lambda: _enqueue(run, "grant", grant, grant.signature),
            )
        else:
            run.found(subject, f"pending, unknown on chain; the outbox settled its write as {settled}")
    # failed, or revoked before it ever reached the chain: nothing on chain is what both sides say.


def _reconcile_grants(run: _Run, from_block: int) -> None:
    events = run.client.grant_events(from_block=from_block)
    recorded: dict[str, GrantEvent] = {}
    revoked: dict[str, GrantEvent] = {}
    for event in events:
        key = "0x" + event.grant_id.hex()
        (recorded if event.kind == "recorded" else revoked).setdefault(key, event)
    known: set[str] = set()
    for grant in Grant.objects.order_by("created_at", "id").iterator():
        run.report.grants_checked += 1
        key = grant.id.lower()
        known.add(key)
        landed = recorded.get(key)
        if landed is None:
            _grant_off_chain(run, grant)
        else:
            state = run.client.grant_state(landed.grant_id)
            _grant_on_chain(run, grant, landed, state, revoked.get(key))
    for key, event in recorded.items():
        if key not in known:
            run.found(f"grant {key}", f"on chain (tx {event.tx}, block {event.block}), unknown to the database")


# --- Registered keys ------------------------------------------------------------------------------


def _reconcile_keys(run: _Run) -> None:
    for check in registered_keys_compare(client=run.client, outbox=run.outbox.status):
        if check.state == "not-on-chain-yet":
            continue
        run.report.keys_checked += 1
        if check.state == "pending":
            run.report.in_flight += 1
            run.report.pending.append(f"{check.subject}: pending: {check.detail}")
        elif check.state == "mismatch":
            run.found(check.subject, check.detail)


# --- Anchors --------------------------------------------------------------------------------------


def _mark_anchored(anchor_id: int, found: ChainAnchor) -> bool:
    with transaction.atomic():
        return anchor_confirmed(anchor_id=anchor_id, tx_hash=found.tx, block_number=found.block) is not None


def _anchor_row(run: _Run, row: AccessLogAnchor, found: ChainAnchor | None) -> None:
    subject = f"anchor {row.pk} (seq {row.first_seq}..{row.last_seq}, checkpoint {row.checkpoint_id})"
    if run.outbox.in_flight("anchor", str(row.pk)):
        run.report.in_flight += 1
    elif row.status == AnchorStatus.PENDING and found is not None:
        run.found(
            subject,
            f"on chain (tx {found.tx}), pending in the database",
            "marked anchored with the chain's transaction",
            lambda: _mark_anchored(row.pk, found),
        )
    elif row.status == AnchorStatus.PENDING:
        run.found(
            subject,
            "pending in the database with nothing on its way to the chain",
            "marked failed; the next anchoring run covers the range again",
            lambda: anchor_failed(anchor_id=row.pk, error="reconcile: never reached the chain"),
        )
    elif found is None:
        run.found(subject, f"anchored in the database (tx {row.tx_hash or 'none'}), not on chain")


def _reconcile_anchors(run: _Run) -> None:
    on_chain, _ = chain_anchors(run.client)
    by_range: dict[tuple[int, int, bytes], ChainAnchor] = {(a.first_seq, a.last_seq, a.root): a for a in on_chain}
    matched: set[tuple[int, int, bytes]] = set()
    for row in AccessLogAnchor.objects.exclude(status=AnchorStatus.FAILED).order_by("first_seq"):
        run.report.anchors_checked += 1
        key = (row.first_seq, row.last_seq, bytes(row.root))
        found = by_range.get(key)
        if found is not None:
            matched.add(key)
        _anchor_row(run, row, found)
    for anchor in on_chain:
        if (anchor.first_seq, anchor.last_seq, anchor.root) not in matched:
            run.found(
                f"chain anchor seq {anchor.first_seq}..{anchor.last_seq}",
                f"on chain (tx {anchor.tx}, root {anchor.root.hex()[:16]}…), not in the database",
            )


def chain_reconcile(*, dry_run: bool = False, client: ChainClient | None = None) -> ReconcileReport:
    """Compare every grant, every registered key and every access-log anchor with the chain, repair what is safe,
    report the rest (a key that differs is reported, never repaired; one the chain has not mined yet is pending).

    Raises ChainUnavailable when the node cannot be asked (nothing is changed then).
    """
    client = client or chain_client()
    if not dry_run:
        # Confirmations whose blocks the chain forgot go back to the outbox first (same bytes, replayed by
        # the relay), so below they count as in flight instead of "not repairable here".
        reopened = outbox_recheck(client=client)
        if reopened:
            logger.warning("chain reconcile: %d confirmed write(s) lost by the chain are being sent again", reopened)
    report = ReconcileReport(dry_run=dry_run)
    run = _Run(client, report)
    deployment = deployment_current(chain_id=client.chain_id, artifact_hash=client.artifact.hash)
    _reconcile_grants(run, deployment.block if deployment is not None else 0)
    _reconcile_keys(run)
    _reconcile_anchors(run)
    logger.info(
        "chain reconcile: %d differences, %d remaining, dry_run=%s",
        len(report.differences),
        len(report.remaining),
        dry_run,
    )
    return report
