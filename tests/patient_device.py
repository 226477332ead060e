"""The patient's device in tests: her key made and registered the way her browser does, and her signatures.

The server signs nothing in a patient's name, so a test that shares, revokes, joins a study or erases acts as
her browser: `device_of(patient)` creates her key on first use and registers it with a signed registration
(consent.keys.patient_key_register), then `grant_issue_signed`, `grant_revoke_signed` and `erasure_signatures`
sign exactly the typed data the portal hands her browser.
"""

from __future__ import annotations

from typing import Any

from consent.keys import patient_key_custody, patient_key_register, registration_typed_data
from consent.models import Grant, KeyRegistration
from consent.services import (
    erasure_revocations,
    grant_draft,
    grant_issue,
    grant_revoke,
    grant_typed_data,
    revoke_typed_data,
)
from ledger import signing
from ledger.device import Device
from records.models import Patient

# Patient id -> her device. Record ids are fresh UUIDs, so tests never see each other's devices.
_DEVICES: dict[str, Device] = {}


def key_register(patient: Patient, device: Device, *, previous: Device | None = None) -> KeyRegistration:
    """Register `device`'s key for her record, signed by it (and by `previous` for a rotation)."""
    previous_address = previous.address if previous is not None else signing.ZERO_ADDRESS
    typed = registration_typed_data(patient=patient, key=device.address, previous=previous_address)
    registration = patient_key_register(
        patient=patient,
        by=patient.user,  # type: ignore[arg-type]
        address=device.address,
        signature=device.sign(typed),
        previous_signature=previous.sign(typed) if previous is not None else "",
    )
    _DEVICES[str(patient.pk)] = device
    return registration


def device_of(patient: Patient) -> Device:
    """Her device: the key she created and registered, made on first use (needs ConsentRegistry deployed)."""
    device = _DEVICES.get(str(patient.pk))
    if device is None:
        assert patient_key_custody(patient) == "none", "only a record without a key gets a fresh device key"
        device = Device.new()
        key_register(patient, device)
    return device


def grant_signed_terms(**terms: Any) -> dict[str, Any]:
    """The grant_issue keyword arguments with her signature over the draft and the salts it was made with."""
    device = device_of(terms["patient"])
    draft = grant_draft(**terms)
    signature = device.sign(grant_typed_data(draft))
    return {**terms, "salt": draft.salt, "commitment_salt": draft.commitment_salt, "signature": signature}


def grant_issue_signed(**terms: Any) -> Grant:
    """grant_issue as the portal calls it once her browser signed: same terms, her signature, the draft's salts."""
    return grant_issue(**grant_signed_terms(**terms))


def revocation_signature(grant: Grant) -> str:
    """Her signature revoking `grant`, made with her current key."""
    return device_of(grant.patient).sign(revoke_typed_data(grant))


def grant_revoke_signed(*, grant: Grant, by: Any) -> Grant:
    """grant_revoke with her signature over the revocation."""
    return grant_revoke(grant=grant, by=by, signature=revocation_signature(grant))


def erasure_signatures(patient: Patient) -> dict[str, str]:
    """What the erase page's browser sends: grant id -> her signature revoking it, for every grant erasure ends."""
    revocations = erasure_revocations(patient=patient)
    if not revocations:
        return {}
    device = device_of(patient)
    return {grant.id: device.sign(typed) for grant, typed in revocations}


def legacy_server_key(patient: Patient) -> bytes:
    """Make `patient` a record from before self-custody: the operator holds a sealed copy of her signing key
    ("server" custody), sealed by records' own envelope as old databases have it. Returns the key."""
    import secrets

    from records import keys
    from records.envelope import wallet_seal

    fresh = Patient.objects.get(pk=patient.pk)
    data_key = keys.patient_key_unwrap(
        patient_id=fresh.id, wrapped=bytes(fresh.wrapped_key or b""), master_key_id=fresh.master_key_id
    )
    private_key = secrets.token_bytes(32)
    Patient.objects.filter(pk=patient.pk).update(
        wallet_address=signing.patient_address(private_key=private_key),
        wallet_ciphertext=wallet_seal(patient_key=data_key, patient_id=fresh.id, private_key=private_key),
    )
    return private_key


def participation_join_signed(*, study: Any, by: Any) -> Any:
    """participation_join as the portal's join page calls it: her signature over participation_draft's typed
    data, with the draft's salts and start."""
    from records.models import Patient as Record
    from research.services import participation_draft, participation_join

    device = device_of(Record.objects.get(user=by, erased_at__isnull=True))
    draft = participation_draft(study=study, by=by)
    return participation_join(
        study=study,
        by=by,
        signature=device.sign(grant_typed_data(draft)),
        salt=draft.salt,
        commitment_salt=draft.commitment_salt,
        not_before=draft.not_before,
    )


def participation_withdraw_signed(*, participation: Any, by: Any) -> Any:
    """participation_withdraw with her signature revoking the study's grant."""
    from research.services import grant_of, participation_withdraw

    grant = grant_of(participation)
    return participation_withdraw(participation=participation, by=by, signature=revocation_signature(grant))
