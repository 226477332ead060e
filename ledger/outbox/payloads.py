"""Outbox payloads: checked when enqueued, and turned into the contract call when relayed."""

from __future__ import annotations

from typing import Any

from ledger import signing
from ledger.client import ChainClient
from ledger.models import OutboxKind, OutboxMessage


def _hex_bytes(value: object, length: int) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("expected 0x-prefixed hex")
    raw = bytes.fromhex(value[2:])
    if len(raw) != length:
        raise ValueError(f"expected {length} bytes")
    return raw


def _grant_payload(payload: dict[str, Any]) -> tuple[signing.Grant, signing.Signature]:
    try:
        fields = payload["grant"]
        grant = signing.Grant(
            patient=fields["patient"],
            grantee=fields["grantee"],
            scope_commitment=_hex_bytes(fields["scope_commitment"], 32),
            not_before=int(fields["not_before"]),
            not_after=int(fields["not_after"]),
            salt=_hex_bytes(fields["salt"], 32),
        )
        return grant, signing.Signature.from_bytes(_hex_bytes(payload["signature"], 65))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed grant payload ({type(exc).__name__})") from exc


def _anchor_payload(payload: dict[str, Any]) -> tuple[bytes, int]:
    try:
        root, size = _hex_bytes(payload["root"], 32), payload["size"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed anchor payload ({type(exc).__name__})") from exc
    if not isinstance(size, int) or not 0 < size < 2**64:
        raise ValueError("malformed anchor payload (size)")
    return root, size


def _account_payload(payload: dict[str, Any]) -> tuple[bytes, signing.Signature | None]:
    """A reset's cancellation (account and the registered key's signature) or completion (account only)."""
    try:
        account = _hex_bytes(payload["account"], 32)
        text = payload.get("signature") or ""
        return account, signing.Signature.from_bytes(_hex_bytes(text, 65)) if text else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed key payload ({type(exc).__name__})") from exc


def _check_payload(kind: str, payload: dict[str, Any]) -> None:
    if kind == OutboxKind.ANCHOR:
        _anchor_payload(payload)
    elif kind in (OutboxKind.KEY, OutboxKind.KEY_RESET):
        signing.KeyChange.from_payload(payload)
    elif kind == OutboxKind.KEY_RESET_CANCEL:
        if _account_payload(payload)[1] is None:
            raise ValueError("a cancellation carries the registered key's signature")
    elif kind == OutboxKind.KEY_RESET_DONE:
        _account_payload(payload)
    else:
        _grant_payload(payload)


def _contract_call(client: ChainClient, message: OutboxMessage) -> Any:
    if message.kind == OutboxKind.ANCHOR:
        return client.anchor_call(*_anchor_payload(message.payload))
    if message.kind == OutboxKind.KEY:
        return client.key_call(signing.KeyChange.from_payload(message.payload))
    if message.kind == OutboxKind.KEY_RESET:
        return client.key_reset_call(signing.KeyChange.from_payload(message.payload))
    if message.kind in (OutboxKind.KEY_RESET_CANCEL, OutboxKind.KEY_RESET_DONE):
        account, signature = _account_payload(message.payload)
        if signature is None:
            return client.key_reset_complete_call(account)
        return client.key_reset_cancel_call(account, signature)
    grant, signature = _grant_payload(message.payload)
    if message.kind == OutboxKind.GRANT:
        return client.grant_call(grant, signature)
    return client.revoke_call(grant, signature)
