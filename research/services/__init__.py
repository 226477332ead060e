"""Studies: create, change state (one service), join and withdraw, request runs and releases, check outputs.

A package by concern: a study's state machine and its life (studies), a patient joining and
leaving (participation), runs and releases (analyses). Callers import from here.
"""

from __future__ import annotations

from research.services.analyses import analysis_run_request, output_check, release_request
from research.services.participation import (
    _join_terms,
    grant_of,
    participation_draft,
    participation_for,
    participation_join,
    participation_withdraw,
)
from research.services.studies import (
    FHIR_STATUS,
    JOINABLE,
    REASON_REQUIRED,
    RUNNABLE,
    SYSTEM_CLOSABLE,
    TRANSITIONS,
    VERBS,
    StudyRefused,
    is_member,
    is_pi,
    studies_close_ended,
    study_create,
    study_for_member,
    study_member_add,
    study_spec_update,
    study_transition,
)

__all__ = [
    "FHIR_STATUS",
    "JOINABLE",
    "REASON_REQUIRED",
    "RUNNABLE",
    "SYSTEM_CLOSABLE",
    "TRANSITIONS",
    "VERBS",
    "StudyRefused",
    "_join_terms",
    "analysis_run_request",
    "grant_of",
    "is_member",
    "is_pi",
    "output_check",
    "participation_draft",
    "participation_for",
    "participation_join",
    "participation_withdraw",
    "release_request",
    "studies_close_ended",
    "study_create",
    "study_for_member",
    "study_member_add",
    "study_spec_update",
    "study_transition",
]
