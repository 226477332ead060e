"""Erasure of a record, in its one order: revoke every grant, clear the scopes, shred the key, scrub the account."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from django.db import transaction
from django.db.models import QuerySet

from accounts.services import account_scrub
from consent.models import Grant, GrantStatus, KeyBackup
from consent.services.grants import _revoke_locked
from consent.services.terms import revoke_typed_data
from records.models import Patient
from records.services import patient_erase


def _unrevoked(patient: Patient) -> QuerySet[Grant]:
    """The grants erasure must revoke first: every one not revoked or refused by the chain, expired ones too."""
    return (
        Grant.objects.select_related("patient")
        .filter(patient=patient, status__in=[GrantStatus.PENDING, GrantStatus.RECORDED])
        .order_by("created_at", "id")
    )


def erasure_revocations(*, patient: Patient) -> list[tuple[Grant, dict[str, object]]]:
    """What a patient holding her own key signs on the erase page: each grant erasure revokes, with its typed data."""
    return [(grant, revoke_typed_data(grant)) for grant in _unrevoked(patient)]


# What the layers above consent keep about a patient (diagnostic jobs, research participation ...)
# is scrubbed by steps they register here at start-up (AppConfig.ready), run inside the erasure's
# transaction after the key is gone: consent cannot import them, and erasure stays one service.
ERASURE_STEPS: list[Callable[[Patient], None]] = []


def erasure_step_register(step: Callable[[Patient], None]) -> None:
    """Add a step that erasure runs for every erased record (idempotent per function)."""
    if step not in ERASURE_STEPS:
        ERASURE_STEPS.append(step)


def patient_record_erase(
    *, patient: Patient, actor: str, revocation_signatures: Mapping[str, str] | None = None
) -> Patient:
    """Erase a record, in the one order there is: end its sharing, then destroy its key, then its account's name.

    Every live grant is revoked first, signed with the patient's key while that key still
    exists (after the shred nobody could ever sign the revocations): by her browser, in
    `revocation_signatures` (grant id -> signature); the server signs none, so a missing one
    refuses the whole erasure (SignatureRequired). And every grant's scope
    and commitment salt are cleared. Then the key is
    destroyed (records.services.patient_erase), the account is closed and its name and
    e-mail removed. One transaction: either all of it happened or none of it did. Used by
    the portal's erase page and the erase_patient command alike.
    """
    with transaction.atomic():
        # Locked so a grant issued while this runs cannot escape the revocations.
        Patient.objects.select_for_update().filter(pk=patient.pk).first()
        live = _unrevoked(patient).select_for_update()
        signatures = revocation_signatures or {}
        for grant in live:
            # She signed these on the erase page (erasure_revocations lists them).
            _revoke_locked(grant, actor=actor, signature=signatures.get(grant.id))
        # What she shared, with whom and for what is about her: the scopes go, and with the commitment
        # salt the on-chain commitments can no longer be tied to any scope. The chain keeps the commitment.
        Grant.objects.filter(patient=patient).update(resource_types=[], categories=[], actions=[], commitment_salt="")
        # Her key backup is ciphertext only, but it is hers: an erased record keeps no trace of her key.
        KeyBackup.objects.filter(patient=patient).delete()
        erased = patient_erase(patient=patient, actor=actor)
        for step in ERASURE_STEPS:
            step(erased)
        if erased.user_id is not None:
            account_scrub(user_id=erased.user_id)
    return erased
