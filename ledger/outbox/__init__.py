"""The outbox: every chain write is a row written in the same transaction as the change it records, and a relay
sends it, waits for confirmations, retries with backoff, manages the relayer's nonce, and never sends it twice.

Why it cannot send a write twice:
- one row per write: (kind, ref) is unique, and enqueueing it again returns the existing row;
- a row is signed once: nonce, raw bytes and hash are committed *before* the first broadcast, so a relay that
  dies between the two, or a node that was down, is repaired by sending the same bytes again. One nonce can be
  mined once, so resending can never make a second transaction;
- the one exception proves itself first: when the chain shows the row's nonce used by a *different*
  transaction, the row's bytes can never be mined, and only then is it signed again with a new nonce.

A chain that forgets blocks (a node killed before it wrote its last blocks, a state file rolled back, a
reorganisation) is a vanished receipt: every pass first asks the chain how many transactions of the relayer
account are mined, and any message confirmed with a nonce at or above that count was lost with its block. It
goes back to `sent` with the same bytes (patients' signatures and anchor roots are in the payload, so the
write is replayed exactly), its `on_reorged` handler takes the confirmed state back in the same transaction,
and the next check rebroadcasts it. A gap in the relayer's nonces that no stored message can fill is not
waited on forever: the next signature takes the lowest free nonce from the chain's count.

Higher layers (consent, audit) learn the outcome through handlers they register in their AppConfig.ready();
ledger never imports them. Handlers run in the transaction that marks the message confirmed, failed or lost.
"""

from __future__ import annotations

from ledger.outbox.enqueue import outbox_enqueue
from ledger.outbox.handlers import Handler, register_outbox_handler
from ledger.outbox.relay import outbox_relay
from ledger.outbox.reorg import outbox_recheck
from ledger.outbox.report import RelayReport, outbox_backoff

__all__ = [
    "Handler",
    "RelayReport",
    "outbox_backoff",
    "outbox_enqueue",
    "outbox_recheck",
    "outbox_relay",
    "register_outbox_handler",
]
