"""Compute to data: freeze a run's cohort, read each participant through the gate in chunks, combine
per-chunk sufficient statistics, apply disclosure control, release after the output check.

A package by concern: freezing and committing to the cohort (cohort), reading a chunk through the
gate (reading), combining a round's chunks under disclosure control (combine), releasing a checked
output (release), and the run's own log entries (journal). Callers import from here.
"""

from __future__ import annotations

from research.runs.cohort import (
    CHUNK_SIZE,
    LEAF_DOMAIN,
    analysis_key,
    analysis_run_start,
    cohort_inclusion,
    cohort_leaf,
    runs_reading,
)
from research.runs.combine import analysis_run_advance, analysis_run_combine, analysis_run_in_process
from research.runs.reading import analysis_chunk_run
from research.runs.release import release_finalise

__all__ = [
    "CHUNK_SIZE",
    "LEAF_DOMAIN",
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
