"""Writes to the record store: patients, FHIR ingest, erasure, master-key rotation.

Every write of patient data appends its access-log entries in the same
transaction, so the log and the store never disagree.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.models import Outcome
from audit.services import LogEvent, access_log_append, access_log_append_many
from healthledger.errors import KeyDestroyed
from records import keys
from records.fhir import Document, parse_document, patient_compartment
from records.ingest import IdMode, PatientWrites, Source, document_write, server_ids_assign
from records.models import IndexToken, Patient, Resource, ResourceVersion

logger = logging.getLogger(__name__)


@dataclass
class IngestResult:
    """What one document did: per patient, the "Type/id/_history/n" it created and updated."""

    patients: dict[uuid.UUID, PatientWrites]

    @property
    def created(self) -> int:
        return sum(len(w.created) for w in self.patients.values())

    @property
    def updated(self) -> int:
        return sum(len(w.updated) for w in self.patients.values())

    @property
    def unchanged(self) -> int:
        return sum(len(w.unchanged) for w in self.patients.values())

    @property
    def resources(self) -> int:
        """Resources accepted: created, updated, or already stored unchanged."""
        return self.created + self.updated + self.unchanged


def patient_create(*, user: User | None = None) -> Patient:
    """Create an empty patient record with a fresh data key wrapped under the current master key.

    No signing key is made here, ever: the patient creates hers in her browser and registers its address
    (consent.keys); until then the record's key custody is "none" and nothing can be signed in her name.
    """
    patient = Patient(user=user)
    # The server names every record; no source's Patient id ever does.
    patient.fhir_id = str(patient.id)
    patient.wrapped_key, patient.master_key_id = keys.patient_key_new(patient_id=patient.id)
    patient.full_clean(exclude=["wrapped_key", "wallet_ciphertext"])
    patient.save(force_insert=True)
    return patient


def patient_wallet_drop(*, patient: Patient, address: str) -> bool:
    """Destroy the server's sealed copy of the patient's signing key, once she holds it herself.

    Only the copy whose address is `address` (the one she proved to hold): a stale request cannot drop a
    different key. True when a copy was dropped now. The address stays: it is the registered one.
    """
    dropped = Patient.objects.filter(
        pk=patient.pk, wallet_address=address, wallet_ciphertext__isnull=False, erased_at__isnull=True
    ).update(wallet_ciphertext=None)
    return dropped == 1


def patient_wallet_register(*, patient: Patient, address: str) -> None:
    """Record the address of a key the patient made in her browser (the server never had it)."""
    Patient.objects.filter(pk=patient.pk, erased_at__isnull=True).update(wallet_address=address, wallet_ciphertext=None)


@dataclass(frozen=True)
class WriteContext:
    """What the write's access-log entry says beyond who wrote: why, under which grant, for which job."""

    purpose: str = ""
    grant_ref: str = ""
    job_id: str = ""


def fhir_ingest(
    *,
    payload: bytes,
    actor: str,
    patient: Patient,
    document: Document | None = None,
    context: WriteContext | None = None,
    mode: IdMode = IdMode.IMPORT,
    source: Source | None = None,
) -> IngestResult:
    """Validate, encrypt, version and index one FHIR document (a resource; a transaction, batch or collection Bundle).

    All or nothing: any invalid entry rejects the whole document with InvalidFHIR
    (or DocumentTooLarge) and nothing is stored. Everything goes into `patient`'s
    record: ids in the document never decide whose record it is (records.ingest says
    how server ids are given). A caller that already parsed `payload` (to decide on
    it) passes the `document` so it is not validated twice; `context` fills the one
    "records.write" entry.
    """
    document = document or parse_document(payload)
    compartments = patient_compartment(document)
    context = context or WriteContext()
    writes = _document_store(document, compartments, patient, actor, context, mode, source or Source())
    result = IngestResult(patients=writes)
    logger.info(
        "fhir ingest: %d created, %d updated, %d unchanged",
        result.created,
        result.updated,
        result.unchanged,
    )
    return result


def _document_store(
    document: Document,
    compartments: dict[int, str | None],
    patient: Patient,
    actor: str,
    context: WriteContext,
    mode: IdMode,
    source: Source,
) -> dict[uuid.UUID, PatientWrites]:
    with transaction.atomic():
        # Locked so two uploads into one record cannot both write version n+1 of a resource,
        # nor both claim to be the record's first source.
        patient = Patient.objects.select_for_update().get(pk=patient.pk)
        if patient.is_erased:
            raise KeyDestroyed("this patient's record was erased; nothing can be added to it")
        first_source = patient.primary_source  # as locked, before planning may claim it
        planned, mapping = server_ids_assign(document, compartments, patient, mode=mode, source=source)
        writes = (
            document_write(planned, mapping, source, locked={patient.id: first_source})
            if planned
            else {patient.id: PatientWrites(patient_id=patient.id)}
        )
        access_log_append_many(
            events=[
                LogEvent(
                    actor=actor,
                    action="records.write",
                    outcome=Outcome.PERMIT,
                    patient_ref=patient_id,
                    resource_ids=tuple(w.created + w.updated),
                    purpose=context.purpose,
                    grant_ref=context.grant_ref,
                    job_id=context.job_id,
                )
                for patient_id, w in writes.items()
            ]
        )
    return writes


def patient_erase(*, patient: Patient, actor: str) -> Patient:
    """Crypto-shred a patient's record: destroy their key, so every version of every resource is unreadable.

    Callers revoke the patient's grants first (consent.services.patient_record_erase is the
    one place that does both, in that order). The key's database part is cleared and its
    key-store part deleted once this commits: from then on no copy of the database, backups
    included, can be opened, whoever holds the master key. Blind-index tokens, version and
    resource rows are deleted, so not even the shape of the record (which types, how many,
    when) stays in the live database. Erasing an erased record changes
    nothing but finishes a key-store deletion a crash may have interrupted.
    """
    with transaction.atomic():
        locked = Patient.objects.select_for_update().get(pk=patient.pk)
        if locked.is_erased:
            transaction.on_commit(lambda: keys.patient_key_destroy(patient_id=locked.pk))
            return locked
        wrapped = bytes(locked.wrapped_key or b"")
        locked.wrapped_key = None
        locked.wallet_ciphertext = None
        locked.erased_at = timezone.now()
        locked.save(update_fields=["wrapped_key", "wallet_ciphertext", "erased_at"])
        IndexToken.objects.filter(resource__patient=locked).delete()
        # The ciphertext is useless without the key, but its rows still say which kinds of resource,
        # how many and when: they go too (backups keep theirs, unreadable).
        ResourceVersion.objects.filter(resource__patient=locked).delete()
        Resource.objects.filter(patient=locked).delete()
        access_log_append(
            event=LogEvent(actor=actor, action="records.erase", outcome=Outcome.PERMIT, patient_ref=locked.id)
        )

        def shred() -> None:
            # After the commit: a rolled-back erasure must not have destroyed the key.
            keys.patient_key_forget(wrapped=wrapped)
            keys.patient_key_destroy(patient_id=locked.pk)

        transaction.on_commit(shred)
    logger.info("patient record erased")
    return locked


def master_key_rotate() -> int:
    """Rewrap every live patient key under a new master key, then retire the old one; returns how many.

    Records are not re-encrypted: only the patient keys change wrapping. Crash-safe
    in every step (keys.master_key_rotation_begin / _finish); the rewrap loops until
    no live key is left under an old master key, which also catches a record created
    by a process that wrapped with the old key while this ran.
    """
    ring = keys.master_key_rotation_begin()
    total = 0
    while True:
        with transaction.atomic():
            # Locked so an erasure running now cannot be undone by writing back a rewrapped key.
            stale = list(
                Patient.objects.select_for_update()
                .filter(wrapped_key__isnull=False)
                .exclude(master_key_id=ring.current_id)
            )
            for patient in stale:
                wrapped = bytes(patient.wrapped_key or b"")
                key = keys.patient_key_part_unwrap(
                    patient_id=patient.id, wrapped=wrapped, master_key_id=patient.master_key_id
                )
                patient.wrapped_key, patient.master_key_id = keys.patient_key_wrap(
                    patient_id=patient.id, key=key, keyring=ring
                )
            Patient.objects.bulk_update(stale, ["wrapped_key", "master_key_id"], batch_size=500)
        total += len(stale)
        if not stale:
            break
    retired = keys.master_key_rotation_finish(keyring=ring)
    logger.info("master key rotated: %d patient keys rewrapped, %d keys retired", total, len(retired))
    return total
