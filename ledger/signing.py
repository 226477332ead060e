"""EIP-712 typed data for consent grants and revocations, computed exactly as ConsentRegistry.sol does.

The patient signs with a per-patient pseudonymous secp256k1 key; the operator's relayer pays the gas.
A grant's id is its EIP-712 struct hash (no domain), so one grant has one id everywhere; the signature,
whose domain binds the chain id and the contract address, is what cannot be replayed elsewhere.

Two salts, on purpose: `commitment_salt` hides the scope inside `scope_commitment` and never leaves the
database (the scope space is small enough to brute-force otherwise); `Grant.salt` is a public nonce that
travels on chain so that two otherwise identical grants get distinct ids.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import is_address, keccak, to_checksum_address

DOMAIN_NAME = "HealthLedger ConsentRegistry"
DOMAIN_VERSION = "1"

_GRANT_FIELDS = [
    {"name": "patient", "type": "address"},
    {"name": "terms", "type": "Terms"},
]
_TERMS_FIELDS = [
    {"name": "grantee", "type": "address"},
    {"name": "scopeCommitment", "type": "bytes32"},
    {"name": "notBefore", "type": "uint64"},
    {"name": "notAfter", "type": "uint64"},
    {"name": "salt", "type": "bytes32"},
]
_REVOKE_FIELDS = [{"name": "grantId", "type": "bytes32"}]
_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

_TERMS_TYPE = "Terms(address grantee,bytes32 scopeCommitment,uint64 notBefore,uint64 notAfter,bytes32 salt)"
TERMS_TYPEHASH = keccak(text=_TERMS_TYPE)
GRANT_TYPEHASH = keccak(text="Grant(address patient,Terms terms)" + _TERMS_TYPE)
REVOKE_TYPEHASH = keccak(text="Revoke(bytes32 grantId)")
UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Grant:
    """A grant as the patient signs it and the contract records it. Addresses are checksummed hex."""

    patient: str
    grantee: str
    scope_commitment: bytes
    not_before: int
    not_after: int
    salt: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "patient", to_checksum_address(self.patient))
        object.__setattr__(self, "grantee", to_checksum_address(self.grantee))
        if len(self.scope_commitment) != 32 or len(self.salt) != 32:
            raise ValueError("scope_commitment and salt must be exactly 32 bytes")
        if not (0 <= self.not_before < self.not_after <= UINT64_MAX):
            raise ValueError("a grant needs 0 <= not_before < not_after < 2**64")

    def as_message(self) -> dict[str, object]:
        return {
            "patient": self.patient,
            "terms": {
                "grantee": self.grantee,
                "scopeCommitment": self.scope_commitment,
                "notBefore": self.not_before,
                "notAfter": self.not_after,
                "salt": self.salt,
            },
        }

    def terms_abi_tuple(self) -> tuple[str, bytes, int, int, bytes]:
        return (self.grantee, self.scope_commitment, self.not_before, self.not_after, self.salt)

    def as_abi_tuple(self) -> tuple[str, tuple[str, bytes, int, int, bytes]]:
        """The contract's Grant struct: (patient, (grantee, scopeCommitment, notBefore, notAfter, salt))."""
        return (self.patient, self.terms_abi_tuple())


@dataclass(frozen=True)
class Signature:
    """A 65-byte secp256k1 signature split the way the contract takes it (v is 27 or 28, s is low)."""

    v: int
    r: bytes
    s: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> Signature:
        if len(raw) != 65:
            raise ValueError("a signature is 65 bytes: r || s || v")
        return cls(v=raw[64], r=raw[:32], s=raw[32:64])

    def to_bytes(self) -> bytes:
        return self.r + self.s + bytes([self.v])


def new_salt() -> bytes:
    """32 random bytes, for either salt."""
    return secrets.token_bytes(32)


def canonical_scope_bytes(scope: Mapping[str, object]) -> bytes:
    """One byte string per scope: JSON with sorted keys, no whitespace, UTF-8 (lists keep their order)."""
    return json.dumps(scope, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def scope_commitment(*, commitment_salt: bytes, scope: bytes) -> bytes:
    """keccak256(commitment_salt || canonical scope bytes); the salt must stay secret and off chain."""
    if len(commitment_salt) != 32:
        raise ValueError("commitment_salt must be 32 bytes")
    return keccak(commitment_salt + scope)


def patient_address(*, private_key: bytes) -> str:
    """The checksummed address of a per-patient signing key."""
    return str(Account.from_key(private_key).address)


def terms_hash(grant: Grant) -> bytes:
    """The EIP-712 struct hash of the grant's terms, as ConsentRegistry.hashTerms computes it."""
    encoded = abi_encode(
        ["bytes32", "address", "bytes32", "uint64", "uint64", "bytes32"], [TERMS_TYPEHASH, *grant.terms_abi_tuple()]
    )
    return keccak(encoded)


def grant_id(grant: Grant) -> bytes:
    """The grant's id: its EIP-712 struct hash, as ConsentRegistry.hashGrant computes it."""
    return keccak(abi_encode(["bytes32", "address", "bytes32"], [GRANT_TYPEHASH, grant.patient, terms_hash(grant)]))


def _domain(chain_id: int, verifying_contract: str) -> dict[str, object]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(verifying_contract),
    }


def grant_typed_data(grant: Grant, *, chain_id: int, verifying_contract: str) -> dict[str, object]:
    """The full EIP-712 message a wallet would show the patient for this grant."""
    return {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, "Grant": _GRANT_FIELDS, "Terms": _TERMS_FIELDS},
        "primaryType": "Grant",
        "domain": _domain(chain_id, verifying_contract),
        "message": grant.as_message(),
    }


def revoke_typed_data(grant_id_: bytes, *, chain_id: int, verifying_contract: str) -> dict[str, object]:
    """The full EIP-712 message for revoking the grant with this id."""
    return {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, "Revoke": _REVOKE_FIELDS},
        "primaryType": "Revoke",
        "domain": _domain(chain_id, verifying_contract),
        "message": {"grantId": grant_id_},
    }


def _sign(typed: dict[str, object], private_key: bytes) -> Signature:
    signed = Account.sign_message(encode_typed_data(full_message=typed), private_key=private_key)
    return Signature.from_bytes(bytes(signed.signature))


def grant_sign(grant: Grant, *, private_key: bytes, chain_id: int, verifying_contract: str) -> Signature:
    """The patient's signature over a grant, bound to one chain and one contract."""
    return _sign(grant_typed_data(grant, chain_id=chain_id, verifying_contract=verifying_contract), private_key)


def revoke_sign(grant_id_: bytes, *, private_key: bytes, chain_id: int, verifying_contract: str) -> Signature:
    """The patient's signature revoking a grant, bound to one chain and one contract."""
    return _sign(revoke_typed_data(grant_id_, chain_id=chain_id, verifying_contract=verifying_contract), private_key)


# --- Signatures made in the patient's browser -----------------------------------------------------------
# The browser signs the typed data the server exports (typed_data_json); the server rebuilds the same typed
# data from its own fields and recovers the signer, so a signature over anything else recovers another address.

_REGISTRATION_FIELDS = [
    {"name": "account", "type": "bytes32"},
    {"name": "key", "type": "address"},
    {"name": "previous", "type": "address"},
]
REGISTRATION_TYPE = "KeyRegistration(bytes32 account,address key,address previous)"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
# secp256k1 group order: a signature with s above half of it is malleable, and OpenZeppelin's ECDSA refuses it.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class BadSignature(ValueError):
    """A signature that is malformed, or that the contract would refuse to recover (high s, v not 27/28)."""


def signature_parse(text: str) -> Signature:
    """A 0x-prefixed 65-byte hex signature, held to the contract's rules (v is 27 or 28, s in the lower half)."""
    if not isinstance(text, str) or not text.startswith("0x") or len(text) != 132:
        raise BadSignature("a signature is 0x followed by 130 hex digits")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        raise BadSignature("a signature is 0x followed by 130 hex digits") from None
    signature = Signature.from_bytes(raw)
    if signature.v not in (27, 28) or int.from_bytes(signature.s, "big") > _SECP256K1_N // 2:
        raise BadSignature("the signature is not in the form the contract accepts (v 27/28, low s)")
    return signature


def address_checked(text: object) -> str:
    """A checksummed address from what a page sent; BadSignature when it is not one."""
    if not isinstance(text, str) or not is_address(text):
        raise BadSignature("not an Ethereum address")
    return str(to_checksum_address(text))


def recover_signer(typed: dict[str, object], signature: Signature) -> str:
    """The checksummed address that made this signature over this typed data (any signature recovers someone)."""
    try:
        return str(Account.recover_message(encode_typed_data(full_message=typed), signature=signature.to_bytes()))
    except Exception as exc:  # eth_keys raises several types for an unrecoverable (r, s)
        raise BadSignature("the signature recovers no address") from exc


def account_tag(patient_id: str) -> bytes:
    """The 32 bytes a key registration names its record by: a hash of the record id, never PHI."""
    return keccak(text=f"healthledger/patient|{patient_id}")


def registration_typed_data(
    *, account: bytes, key: str, previous: str, chain_id: int, verifying_contract: str
) -> dict[str, object]:
    """The EIP-712 message a key signs to register itself for a record (previous: the key it replaces, or zero)."""
    return {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, "KeyRegistration": _REGISTRATION_FIELDS},
        "primaryType": "KeyRegistration",
        "domain": _domain(chain_id, verifying_contract),
        "message": {"account": account, "key": to_checksum_address(key), "previous": to_checksum_address(previous)},
    }


_KEY_RESET_CANCEL_FIELDS = [
    {"name": "account", "type": "bytes32"},
    {"name": "key", "type": "address"},
]
KEY_REGISTRATION_TYPEHASH = keccak(text=REGISTRATION_TYPE)
KEY_RESET_CANCEL_TYPEHASH = keccak(text="KeyResetCancel(bytes32 account,address key)")


def key_reset_cancel_typed_data(
    *, account: bytes, key: str, chain_id: int, verifying_contract: str
) -> dict[str, object]:
    """The EIP-712 message the registered key signs to refuse a pending reset to `key`."""
    return {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, "KeyResetCancel": _KEY_RESET_CANCEL_FIELDS},
        "primaryType": "KeyResetCancel",
        "domain": _domain(chain_id, verifying_contract),
        "message": {"account": account, "key": to_checksum_address(key)},
    }


def key_registration_hash(*, account: bytes, key: str, previous: str) -> bytes:
    """The struct hash of KeyRegistration(account, key, previous), as ConsentRegistry.hashKeyRegistration has it."""
    encoded = abi_encode(
        ["bytes32", "bytes32", "address", "address"],
        [KEY_REGISTRATION_TYPEHASH, account, to_checksum_address(key), to_checksum_address(previous)],
    )
    return keccak(encoded)


def typed_data_sign(typed: dict[str, object], *, private_key: bytes) -> Signature:
    """A signature over any of these typed data with a key held in memory: ledger.device's, and tests' (the server
    holds no patient key to sign with)."""
    return _sign(typed, private_key)


@dataclass(frozen=True)
class KeyChange:
    """A key registration as the chain takes it: the new key's signature over KeyRegistration(account, key,
    previous), and for a rotation the previous key's signature over the same message."""

    account: bytes
    key: str
    previous: str
    signature: Signature
    previous_signature: Signature | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", to_checksum_address(self.key))
        object.__setattr__(self, "previous", to_checksum_address(self.previous))
        if len(self.account) != 32:
            raise ValueError("an account is 32 bytes")

    def as_payload(self) -> dict[str, object]:
        """The JSON an outbox row keeps (no secret: an account hash, addresses, signatures)."""
        return {
            "account": "0x" + self.account.hex(),
            "key": self.key,
            "previous": self.previous,
            "signature": "0x" + self.signature.to_bytes().hex(),
            "previous_signature": "0x" + self.previous_signature.to_bytes().hex() if self.previous_signature else "",
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, object]) -> KeyChange:
        """The change an outbox row holds; ValueError when it is malformed."""
        try:
            account = _hex(payload["account"], 32)
            signature = Signature.from_bytes(_hex(payload["signature"], 65))
            previous_text = payload.get("previous_signature") or ""
            previous_signature = Signature.from_bytes(_hex(previous_text, 65)) if previous_text else None
            return cls(
                account=account,
                key=str(payload["key"]),
                previous=str(payload["previous"]),
                signature=signature,
                previous_signature=previous_signature,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed key payload ({type(exc).__name__})") from exc


def _hex(value: object, length: int) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("expected 0x-prefixed hex")
    raw = bytes.fromhex(value[2:])
    if len(raw) != length:
        raise ValueError(f"expected {length} bytes")
    return raw


def typed_data_json(typed: dict[str, object]) -> dict[str, object]:
    """The typed data as JSON for the browser: bytes become 0x hex, integers stay integers (all below 2**53)."""

    def plain(value: object) -> object:
        if isinstance(value, bytes):
            return "0x" + value.hex()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool) and value > 2**53:
            raise ValueError("an integer above 2**53 cannot travel as a JSON number")
        return value

    result = plain(typed)
    assert isinstance(result, dict)
    return result


def typed_data_digest(typed: dict[str, object]) -> bytes:
    """The 32-byte EIP-712 digest (0x1901 || domain separator || struct hash) that the signature covers."""
    signable = encode_typed_data(full_message=typed)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)
