from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.chain_check import ChainCheck, access_log_verify_chain
from audit.exposure import access_log_exposure
from audit.services import access_log_verify

# Exit codes: 1 = tampering found (in the database or against the chain); 2 = the database verified but
# the chain could not be asked, so the result is incomplete. Tampering wins when both apply.
TAMPERED = 1
CHAIN_UNREACHABLE = 2


class Command(BaseCommand):
    help = (
        "Verify every sealed access-log entry against the signed checkpoints, and the checkpoints against the "
        "anchors on chain, and that nothing is older than the maximum merge delay without being sealed and anchored. "
        "States the unprotected window. Exits 1 naming what is wrong, 2 when the chain could not be reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-chain", action="store_true", help="verify the database only; skip the chain")
        parser.add_argument(
            "--jobs",
            type=int,
            default=os.cpu_count() or 1,
            help="worker processes hashing entries (default: one per CPU; 1 checks everything in this process)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["jobs"] < 1:
            raise CommandError("--jobs must be at least 1")
        report = access_log_verify(jobs=options["jobs"])
        self.stdout.write(
            f"checked {report.entries_checked} entries in {report.checkpoints_checked} checkpoints "
            f"in {report.seconds:.3f} s ({report.entries_per_second:,.0f} entries/s, "
            f"{report.entries_checked_in_workers} of them in worker processes); "
            f"{report.unsealed_entries} entries not sealed yet"
        )
        exposure = access_log_exposure()
        self.stdout.write(exposure.describe())
        chain = None if options["no_chain"] else access_log_verify_chain()
        if chain is not None:
            self._write_chain(chain)
        failures = [] if report.problem is None else [f"access log FAILED verification: {report.problem.describe()}"]
        failures += [f"access log FAILED its maximum merge delay: {problem}" for problem in exposure.failures()]
        if chain is not None and chain.problems:
            failures.append(f"access log FAILED verification against the chain: {len(chain.problems)} problem(s)")
        if failures:
            raise CommandError("\n".join(failures), returncode=TAMPERED)
        if chain is not None and not chain.reachable:
            raise CommandError(
                f"chain UNREACHABLE ({chain.error}): the database verified, the anchors were not checked; "
                "run again when the node answers, or pass --no-chain",
                returncode=CHAIN_UNREACHABLE,
            )
        self.stdout.write("access log OK" if chain is None else "access log OK, and matches the chain")

    def _write_chain(self, chain: ChainCheck) -> None:
        if not chain.reachable:
            return
        self.stdout.write(
            f"chain: {chain.anchors_on_chain} anchors cover seq 0..{chain.anchored_entries - 1}"
            if chain.anchors_on_chain
            else "chain: no anchors yet"
        )
        for problem in chain.problems:
            self.stderr.write(problem.describe())
