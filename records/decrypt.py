"""The only functions that turn stored ciphertext into plaintext.

Only consent.gate may import this module (an import-linter contract says so): the
gate decides and logs first, then calls here. Nothing here parses JSON: a read
serves the canonical bytes that were validated and stored on write.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from collections.abc import Iterable, Sequence
from itertools import groupby
from operator import itemgetter

from healthledger.errors import IntegrityFailure, KeyDestroyed
from records import crypto, keys
from records.envelope import (
    SEALED_TEXT_PREFIX,
    VersionOpener,
    head_mac,
    log_text_aad,
    version_aad,
    version_open,
    wallet_open,
)
from records.logtext import ERASED_TEXT
from records.models import Patient
from records.selectors import StoredVersion


def stored_version_decrypt(stored: StoredVersion) -> bytes:
    """Plaintext of one version; KeyDestroyed once erased, IntegrityFailure if tampered with or rolled back."""
    if stored.wrapped_patient_key is None:
        raise KeyDestroyed("this patient's record was erased; its data can never be decrypted again")
    patient_key = keys.patient_key_unwrap(
        patient_id=stored.patient_id, wrapped=stored.wrapped_patient_key, master_key_id=stored.master_key_id
    )
    aad = version_aad(
        patient_id=stored.patient_id,
        resource_type=stored.resource_type,
        fhir_id=stored.fhir_id,
        version=stored.version,
    )
    if stored.version == stored.current_version and not hmac.compare_digest(
        stored.head_mac, head_mac(patient_key=patient_key, aad=aad)
    ):
        # The row says this is the newest version, and the MAC written with the newest says otherwise.
        raise IntegrityFailure("the resource's current version was moved back (rolled back or its newest deleted)")
    return version_open(
        patient_key=patient_key, aad=aad, ciphertext=stored.ciphertext, wrapped_data_key=stored.wrapped_data_key
    )


def stored_versions_decrypt(stored: Iterable[StoredVersion]) -> list[bytes]:
    """Plaintext of several versions, in order; fails as a whole on the first that cannot be opened."""
    return [stored_version_decrypt(item) for item in stored]


def stored_versions_decrypt_each(stored: Sequence[StoredVersion]) -> list[bytes | None]:
    """Plaintext of several versions, in order, None for each that fails its integrity check (it fails alone).

    The same checks as stored_version_decrypt, with each patient key's cipher state set up once and
    each run of one record's versions (a search page is one run) opened in one call
    (VersionOpener.open_each). KeyDestroyed once erased.
    """
    openers: dict[tuple[bytes, uuid.UUID, str], VersionOpener] = {}
    opened: list[bytes | None] = []
    for (wrapped, patient_id, key_id), run in groupby(stored, key=_record_key):
        if wrapped is None:
            raise KeyDestroyed("this patient's record was erased; its data can never be decrypted again")
        opener = openers.get((wrapped, patient_id, key_id))
        if opener is None:
            patient_key = keys.patient_key_unwrap(patient_id=patient_id, wrapped=wrapped, master_key_id=key_id)
            opener = openers[(wrapped, patient_id, key_id)] = VersionOpener(patient_key, patient_id)
        opened += opener.open_each(run)
    return opened


# A version's record: (wrapped patient key, patient id, master key id), by field place (no Python call per version).
_record_key = itemgetter(6, 0, 7)


def stored_versions_keys_prefetch(stored: Sequence[StoredVersion]) -> None:
    """Cache the keys of every record these versions belong to with one key-store call (a research chunk's
    records), before they are opened one record after another; erased records are left to fail as usual."""
    keys.patient_keys_prefetch(
        wrapped=list(
            dict.fromkeys(
                (item.patient_id, item.wrapped_patient_key, item.master_key_id)
                for item in stored
                if item.wrapped_patient_key is not None
            )
        )
    )


def patient_signing_key(patient: Patient) -> bytes:
    """The patient's chain signing key; KeyDestroyed once the record was erased."""
    if patient.wrapped_key is None or patient.wallet_ciphertext is None:
        raise KeyDestroyed("this patient's record was erased; their signing key is gone with it")
    patient_key = keys.patient_key_unwrap(
        patient_id=patient.pk, wrapped=bytes(patient.wrapped_key), master_key_id=patient.master_key_id
    )
    return wallet_open(patient_key=patient_key, patient_id=patient.pk, sealed=bytes(patient.wallet_ciphertext))


def log_text_open(*, patient_id: uuid.UUID | None, text: str) -> str:
    """A sealed access-log text in words again; "[erased]" once the patient's key is gone; plain text as it is."""
    if patient_id is None or not text.startswith(SEALED_TEXT_PREFIX):
        return text
    key = keys.patient_log_key(patient_id=patient_id)
    if key is None:
        return ERASED_TEXT
    try:
        sealed = base64.urlsafe_b64decode(text[len(SEALED_TEXT_PREFIX) :])
    except (binascii.Error, ValueError) as exc:
        raise IntegrityFailure("a sealed access-log text is not valid") from exc
    return crypto.aead_open(key=key, sealed=sealed, aad=log_text_aad(patient_id=patient_id)).decode("utf-8")
