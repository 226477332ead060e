"""The patient's key on chain: every registration and rotation she signed goes to ConsentRegistry's key registry
through the outbox, so the contract, not this database, says which address signs for her record.

From the moment an account has a key on chain, the contract records only grants signed by that key
(`KeyNotCurrent` otherwise), so the operator cannot swap the address: a change of key needs the registered key's
signature (a rotation), or the time-locked, publicly visible operator-assisted reset (consent.key_reset).

Every registration here is one the key itself signed in the patient's hands (her browser, or a device acting for
her): the server signs none. A legacy record whose key the operator still holds ("server" custody) gets its
registration when she takes that key ("take your key" signs it in her browser); until then nothing is queued.
"""

from __future__ import annotations

from django.db import connection

from consent.models import KeyRegistration
from ledger import signing
from ledger.models import OutboxKind, OutboxMessage
from ledger.outbox import outbox_enqueue
from ledger.selectors import signing_domain
from records.models import Patient


def account_of(patient: Patient) -> bytes:
    """The pseudonymous account the chain knows this record by: a hash of the record id, never PHI."""
    return signing.account_tag(str(patient.pk))


def registration_typed_data(*, patient: Patient, key: str, previous: str = signing.ZERO_ADDRESS) -> dict[str, object]:
    """What a key signs to register itself for this record, bound to this chain and contract."""
    chain_id, contract = signing_domain()
    return signing.registration_typed_data(
        account=account_of(patient), key=key, previous=previous, chain_id=chain_id, verifying_contract=contract
    )


def _queued(address: str) -> bool:
    # A key is registered on chain at most once in its life (the contract refuses a used key), so its address
    # names its registration: by the key itself (kind "key"), or by a completed reset.
    return OutboxMessage.objects.filter(kind__in=[OutboxKind.KEY, OutboxKind.KEY_RESET_DONE], ref=address).exists()


def _enqueue(change: signing.KeyChange) -> None:
    if not _queued(change.key):
        outbox_enqueue(kind=OutboxKind.KEY, ref=change.key, payload=change.as_payload())


def key_registration_enqueue(*, registration: KeyRegistration) -> None:
    """Queue a stored registration for the chain (after the one it rotates from, if that is not queued yet).

    In the caller's transaction: the row and its chain write commit together.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("key_registration_enqueue must run inside the registration's transaction")
    patient = registration.patient
    previous = registration.previous_address or signing.ZERO_ADDRESS
    if previous != signing.ZERO_ADDRESS and not _queued(previous):
        _ensure_address(patient=patient, address=previous)
    _enqueue(
        signing.KeyChange(
            account=account_of(patient),
            key=registration.address,
            previous=previous,
            signature=signing.signature_parse(registration.signature),
            previous_signature=(
                signing.signature_parse(registration.previous_signature) if registration.previous_signature else None
            ),
        )
    )


def _ensure_address(*, patient: Patient, address: str) -> bool:
    if _queued(address):
        return True
    row = KeyRegistration.objects.filter(patient=patient, address=address).order_by("-created_at", "-id").first()
    if row is None:
        return False
    key_registration_enqueue(registration=row)
    return True


def patient_key_on_chain_ensure(*, patient: Patient) -> bool:
    """Make sure the patient's registered key is queued for (or already on) the chain's key registry, in the
    caller's transaction; a grant signed by it waits in the outbox behind it. False: nothing to register (no
    key, or a legacy server-held key she has not taken yet: no registration signed by her exists)."""
    address = Patient.objects.values_list("wallet_address", flat=True).get(pk=patient.pk)
    if not address:
        return False
    return _ensure_address(patient=patient, address=str(address))
