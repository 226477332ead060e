"""`manage.py system_status [--json]`: what is accepted and not done yet, for an operator.

Jobs owed to the broker, open jobs past their deadline and those of them the broker holds no message for;
chain writes not yet confirmed, the oldest one's age, and the relayer's next nonce against the chain's.
Exits 1 when something is stuck: a job without a broker message, or a relayer nonce ahead of the chain's
pending nonce (a chain that forgot blocks). No health data: counts, ages and nonces only.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from diagnostics.dispatch import job_dispatch_status
from ledger.selectors import outbox_status


def _stuck(jobs: dict[str, Any], chain: dict[str, Any]) -> list[str]:
    problems = []
    without = jobs.get("without_broker_message")
    if isinstance(without, int) and without:
        problems.append(f"{without} open job(s) without a broker message (the dispatcher's sweep re-sends them)")
    ours, theirs = chain.get("relayer_next_nonce"), chain.get("chain_nonce_pending")
    if isinstance(ours, int) and isinstance(theirs, int) and ours > theirs:
        problems.append(f"relayer nonce {ours} is ahead of the chain's {theirs}: the chain lost transactions")
    return problems


class Command(BaseCommand):
    help = "Show job dispatch and chain outbox backlog; exit 1 when something is stuck."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        jobs = job_dispatch_status(search_broker=True)
        chain = outbox_status(ask_chain=True)
        problems = _stuck(jobs, chain)
        if options["json"]:
            self.stdout.write(json.dumps({"jobs": jobs, "chain_outbox": chain, "problems": problems}))
        else:
            for section, values in (("jobs", jobs), ("chain outbox", chain)):
                self.stdout.write(f"{section}:")
                for key, value in values.items():
                    self.stdout.write(f"  {key:<24} {value}")
            for problem in problems:
                self.stdout.write(self.style.ERROR(f"STUCK: {problem}"))
        if problems:
            raise SystemExit(1)
