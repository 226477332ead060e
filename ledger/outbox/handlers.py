"""Higher layers (consent, audit) learn an outbox write's outcome through handlers they register in their
AppConfig.ready(); ledger never imports them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ledger.models import OutboxKind, OutboxMessage

Handler = Callable[[OutboxMessage], None]


@dataclass(frozen=True)
class _Handlers:
    on_confirmed: Handler
    on_failed: Handler | None
    on_reorged: Handler | None = None


_HANDLERS: dict[str, _Handlers] = {}


def register_outbox_handler(
    kind: str, *, on_confirmed: Handler, on_failed: Handler | None = None, on_reorged: Handler | None = None
) -> None:
    """Call `on_confirmed(message)` / `on_failed(message)` when a message of this kind settles, and
    `on_reorged(message)` when the block that confirmed it is gone from the chain (it will confirm again).

    Registering a kind again replaces its handlers (one owner per kind).
    """
    if kind not in OutboxKind.values:
        raise ValueError(f"unknown outbox kind {kind!r}")
    _HANDLERS[kind] = _Handlers(on_confirmed=on_confirmed, on_failed=on_failed, on_reorged=on_reorged)


def outbox_handlers(kind: str) -> _Handlers | None:
    """The handlers registered for a kind, read at call time (tests swap the registry)."""
    return _HANDLERS.get(kind)
