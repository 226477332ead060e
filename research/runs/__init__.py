"""Compute to data: freeze a run's cohort, read each participant through the gate in chunks, combine
per-chunk sufficient statistics, apply disclosure control, release after the output check.

Callers import from here.
"""

from __future__ import annotations

from research.runs.reading import (
    CHUNK_SIZE,
    LEAF_DOMAIN,
    PAGE,
    analysis_chunk_run,
    analysis_key,
    analysis_run_advance,
    analysis_run_combine,
    analysis_run_in_process,
    analysis_run_start,
    cohort_inclusion,
    cohort_leaf,
    release_finalise,
    runs_reading,
)

__all__ = [
    "CHUNK_SIZE",
    "LEAF_DOMAIN",
    "PAGE",
    "analysis_chunk_run",
    "analysis_key",
    "analysis_run_advance",
    "analysis_run_combine",
    "analysis_run_in_process",
    "analysis_run_start",
    "cohort_inclusion",
    "cohort_leaf",
    "release_finalise",
    "runs_reading",
]
