"""`manage.py relay_outbox`: run the outbox relay once, or in a loop, beside or instead of Celery beat."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.outbox import RelayReport, outbox_relay


def _line(report: RelayReport) -> str:
    chain = "down" if report.unavailable else "up"
    return (
        f"sent={report.sent} rebroadcast={report.rebroadcast} confirmed={report.confirmed} failed={report.failed} "
        f"waiting={report.waiting} deferred={report.deferred} chain={chain}"
    )


class Command(BaseCommand):
    help = "Send pending chain writes from the outbox and confirm sent ones (one pass, or --loop)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep relaying until interrupted")
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between passes with --loop")
        parser.add_argument("--limit", type=int, default=50, help="messages of each status per pass")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        while True:
            self.stdout.write(_line(outbox_relay(limit=options["limit"])))
            if not options["loop"]:
                return
            try:
                time.sleep(max(0.1, options["interval"]))
            except KeyboardInterrupt:
                return
