"""Issuing and revoking grants.

A grant is signed with the patient's key and written, with its outbox row and its
access-log entry, in one transaction; the relay records it on chain afterwards.
A revocation takes effect in the database at once: the next decision denies,
whatever the chain is doing.

A package by concern: a grant's terms and typed data (terms), whose signature it carries
(signatures), issuing and revoking (grants), erasure in its one order (erasure), and the
chain's answers applied to the mirror (chain_events). Callers import from here.
"""

from __future__ import annotations

from consent.services.chain_events import (
    grant_chain_failed,
    grant_chain_lost,
    grant_confirmed,
    revocation_chain_lost,
    revocation_confirmed,
)
from consent.services.erasure import erasure_revocations, erasure_step_register, patient_record_erase
from consent.services.grants import grant_issue, grant_revoke
from consent.services.signatures import InvalidSignature, SignatureRequired
from consent.services.terms import (
    MAX_GRANT_DURATION,
    MAX_GRANT_LEAD,
    InvalidGrant,
    _chain_payload,
    chain_grant,
    grant_draft,
    grant_typed_data,
    revoke_typed_data,
    scope_document,
)

__all__ = [
    "MAX_GRANT_DURATION",
    "MAX_GRANT_LEAD",
    "InvalidGrant",
    "InvalidSignature",
    "SignatureRequired",
    "_chain_payload",
    "chain_grant",
    "erasure_revocations",
    "erasure_step_register",
    "grant_chain_failed",
    "grant_chain_lost",
    "grant_confirmed",
    "grant_draft",
    "grant_issue",
    "grant_revoke",
    "grant_typed_data",
    "patient_record_erase",
    "revocation_chain_lost",
    "revocation_confirmed",
    "revoke_typed_data",
    "scope_document",
]
