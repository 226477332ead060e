"""Erase a patient's record: revoke its grants, destroy its key (crypto-shredding), close its account. Irreversible."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.services import SignatureRequired, patient_record_erase
from records.models import Patient

ACTOR = "system:erase_patient"


class Command(BaseCommand):
    help = "Erase a patient's record: their key is destroyed and every version of their data becomes unreadable."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("patient_id", help="the record's id (records.Patient, a UUID)")
        parser.add_argument("--no-input", action="store_true", help="do not ask for confirmation")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            patient = Patient.objects.get(pk=uuid.UUID(options["patient_id"]))
        except (ValueError, Patient.DoesNotExist) as exc:
            raise CommandError(f"no patient record {options['patient_id']}") from exc
        if patient.is_erased:
            # Once more: finishes a key-store deletion that a crash may have interrupted.
            patient_record_erase(patient=patient, actor=ACTOR)
            self.stdout.write(f"patient {patient.pk} was already erased at {patient.erased_at:%Y-%m-%d %H:%M} UTC")
            return
        if not options["no_input"]:
            answer = input(f"Erase patient {patient.pk}? Their data can never be read again. Type 'erase': ")
            if answer.strip() != "erase":
                raise CommandError("not erased")
        resources = patient.resources.count()
        live = patient.grants.filter(status__in=["pending", "recorded"]).count()
        try:
            patient_record_erase(patient=patient, actor=ACTOR)
        except SignatureRequired as exc:
            # Only her key can sign the revocations erasure makes first, and the operator holds none.
            raise CommandError(
                f"not erased: {exc}. This patient has {live} live grant(s) that only she can revoke; she erases"
                " from the portal's erase page, which signs their revocations, or revokes them first"
            ) from exc
        self.stdout.write(
            f"erased patient {patient.pk}: {live} grants revoked, {resources} resources are now unreadable,"
            " the account is closed"
        )
