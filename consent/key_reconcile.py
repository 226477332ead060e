"""Registered keys against the chain: for each record with a registered key, the key ConsentRegistry names for
its account must be the database's `wallet_address` (consent.reconcile reports what this finds).

- same address: they agree;
- a registration, rotation or completed reset of either address still in the outbox (pending or sent): pending,
  the chain has not mined it yet;
- a key the operator still holds, never registered on chain and with nothing queued: not compared (such a key
  goes on chain only once she takes it into her browser);
- anything else: a discrepancy, which this command cannot repair (only the patient's key, or a public reset, can
  change the key on chain, and the database must not simply copy whatever the chain says without her signature
  being stored too).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from consent.key_chain import account_of
from ledger import signing
from ledger.client import ChainClient
from ledger.models import OutboxKind, OutboxStatus
from records.models import Patient

State = Literal["match", "pending", "mismatch", "not-on-chain-yet"]

_KEY_WRITES = (OutboxKind.KEY, OutboxKind.KEY_RESET_DONE)
_IN_FLIGHT = (OutboxStatus.PENDING, OutboxStatus.SENT)


@dataclass(frozen=True)
class KeyCheck:
    """How one record's registered key compares with the chain's."""

    record: str
    state: State
    database: str
    chain: str
    detail: str = ""

    @property
    def subject(self) -> str:
        return f"key of record {self.record}"


def _queued(outbox: Mapping[tuple[str, str], str], address: str) -> str | None:
    """The outbox status of the write that registers `address` on chain (a key is registered at most once)."""
    for kind in _KEY_WRITES:
        status = outbox.get((kind, address))
        if status is not None:
            return status
    return None


def _compare(
    record: str, database: str, chain: str, server_held: bool, outbox: Mapping[tuple[str, str], str]
) -> KeyCheck:
    if chain.lower() == database.lower():
        return KeyCheck(record, "match", database, chain)
    mine, theirs = _queued(outbox, database), _queued(outbox, chain) if chain != signing.ZERO_ADDRESS else None
    for address, status in ((database, mine), (chain, theirs)):
        if status in _IN_FLIGHT:
            return KeyCheck(record, "pending", database, chain, f"{address} is in the outbox ({status}), not mined yet")
    if server_held and chain == signing.ZERO_ADDRESS and mine is None:
        return KeyCheck(record, "not-on-chain-yet", database, chain, "held by the operator, never registered on chain")
    on_chain = "no key" if chain == signing.ZERO_ADDRESS else chain
    detail = f"the database registers {database}, the chain names {on_chain}"
    if mine is not None:
        detail += f"; the outbox settled the registration of {database} as {mine}"
    return KeyCheck(record, "mismatch", database, chain, detail)


def registered_keys_compare(*, client: ChainClient, outbox: Mapping[tuple[str, str], str]) -> Iterator[KeyCheck]:
    """Each record with a registered key, compared with the key the chain holds for its account.

    `outbox` maps (kind, ref) to the status of every outbox row. Raises ChainUnavailable when the node cannot
    be asked."""
    registered = Patient.objects.exclude(wallet_address="").order_by("pk")
    server_held = set(registered.filter(wallet_ciphertext__isnull=False).values_list("pk", flat=True))
    for pk, address in registered.values_list("pk", "wallet_address").iterator():
        chain = client.key_of(account_of(Patient(pk=pk)))
        yield _compare(str(pk), str(address), chain, pk in server_held, outbox)
