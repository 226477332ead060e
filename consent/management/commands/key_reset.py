"""Operator-assisted key resets (consent.key_reset): list the requests, approve one after an identity check,
complete those whose public waiting time on chain has passed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.key_reset import InvalidKeyReset, key_reset_approve, key_resets_complete_due
from consent.models import KeyReset, KeyResetStatus

ACTOR = "system:key_reset"


class Command(BaseCommand):
    help = "List, approve (after checking the patient's identity) or complete operator-assisted key resets."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="resets asked for or waiting on chain")
        approve = sub.add_parser("approve", help="put a reset on chain after an identity check; the patient is told")
        approve.add_argument("reset_id", type=int)
        approve.add_argument("--operator", required=True, help="who checked the identity (kept in the access log)")
        sub.add_parser("complete", help="send completeKeyReset for every reset whose delay has passed")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            open_resets = KeyReset.objects.filter(status__in=[KeyResetStatus.REQUESTED, KeyResetStatus.APPROVED])
            for reset in open_resets.order_by("id"):
                ready = f" ready at {reset.ready_at:%Y-%m-%d %H:%M} UTC" if reset.ready_at else ""
                self.stdout.write(f"{reset.pk} patient {reset.patient_id} {reset.status}{ready}")
            return
        if action == "approve":
            asked = KeyReset.objects.filter(pk=options["reset_id"]).first()
            if asked is None:
                raise CommandError(f"no key reset {options['reset_id']}")
            try:
                key_reset_approve(reset=asked, actor=f"{ACTOR}:{options['operator']}")
            except InvalidKeyReset as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"reset {asked.pk} approved: on chain after the relay, effective in 7 days")
            return
        queued = key_resets_complete_due()
        self.stdout.write(f"{len(queued)} reset(s) queued for completion")
