"""Celery tasks of the ledger. Beat runs the outbox relay every OUTBOX_RELAY_SECONDS; outbox_enqueue also
queues it when the transaction that wrote the outbox commits."""

from __future__ import annotations

from celery import shared_task

from ledger.outbox import outbox_relay


@shared_task(name="ledger.tasks.outbox_relay_task", acks_late=True, ignore_result=True)
def outbox_relay_task() -> dict[str, int | bool]:
    """One relay pass. No arguments: the outbox rows are the work list.

    Idempotent and safe to overlap: a duplicate delivery or a second worker finds each message already
    advanced (status compare-and-set), and the relayer-state row lock serialises nonce assignment. A pass
    killed at any point (time limit, lost worker) leaves every message either unsigned or signed with its
    bytes committed, which the next pass resends.
    """
    return outbox_relay().as_dict()
