"""The demo study of `seed_demo --research`: approved, recruiting, with an opted-in generated cohort,
one analysis run and released, so a new user sees a released table at once; demo.patient is invited.

Idempotent: a second call finds the study and does nothing. The server signs nothing in a patient's name:
each cohort member's join is signed by `sign`, her device (seed_demo acts as it), over the typed data her
browser would get.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from django.utils import timezone

from accounts.models import User
from consent.services import grant_typed_data
from healthledger.errors import HealthLedgerError
from ledger.outbox import outbox_relay
from records.models import Patient
from research.models import AnalysisRun, Participation, Study
from research.runs import analysis_chunk_run, analysis_run_combine, analysis_run_start
from research.services import (
    analysis_run_request,
    output_check,
    participation_draft,
    participation_join,
    release_request,
    study_create,
    study_transition,
)

DEMO_TITLE = "Demo: cholesterol and type 2 diabetes in primary care"


def demo_spec() -> dict[str, object]:
    return {
        "title": DEMO_TITLE,
        "summary": "How common type 2 diabetes is by sex, and how total cholesterol is distributed, in adults.",
        "institution": "HealthLedger Demo University",
        "funder": "Demo Research Council",
        "commercial": False,
        "ethics_ref": "DEMO-REC-0001",
        "duo": ["HMB", "NCU", "IRB", "PUB"],
        "ends": (timezone.now() + timedelta(days=365)).date().isoformat(),
        "eligibility": {"age": [18, 100]},
        "analyses": [
            {
                "id": "observation-summary",
                "params": {"code": "http://loinc.org|2093-3", "unit": "mg/dL", "lo": 0, "hi": 600, "bin": 1},
            },
            {
                "id": "count-by-strata",
                "params": {"strata": ["sex", "condition"], "condition": "http://snomed.info/sct|44054006"},
            },
        ],
        "min_cohort": 20,
    }


def demo_study_ensure(
    *,
    researcher: User,
    steward: User,
    cohort: Sequence[Patient],
    sign: Callable[[Patient, dict[str, object]], str],
) -> str:
    """Create, approve and fill the demo study once; returns one line saying what happened.

    `sign(patient, typed_data)`: the patient's signature over her join's typed data, from her own device.
    """
    if Study.objects.filter(title=DEMO_TITLE).exists():
        return ""
    study = study_create(by=researcher, spec=demo_spec())
    for to, by in (("submitted", researcher), ("in-review", steward), ("approved", steward),
                   ("recruiting", researcher)):  # fmt: skip
        study = study_transition(study=study, to=to, by=by, reason="demo")
    joined = 0
    for patient in cohort:
        try:
            draft = participation_draft(study=study, by=patient.user)  # type: ignore[arg-type]
            participation_join(
                study=study,
                by=patient.user,  # type: ignore[arg-type]
                signature=sign(patient, grant_typed_data(draft)),
                salt=draft.salt,
                commitment_salt=draft.commitment_salt,
                not_before=draft.not_before,
            )
            joined += 1
        except HealthLedgerError:
            continue  # a member whose key the seed does not hold signs only for herself
    for _ in range(3):  # send, then see it mined: the relay a worker would run
        outbox_relay(limit=500)
    run = analysis_run_request(study=study, by=researcher, analysis_index=0, enqueue=False)
    # In process, as the worker would: freeze, chunks, combine.
    for index in analysis_run_start(run_id=str(run.pk)):
        analysis_chunk_run(run_id=str(run.pk), index=index)
    run = analysis_run_combine(run_id=str(run.pk))
    released = ""
    if run.status == "succeeded":
        release = release_request(run=AnalysisRun.objects.get(pk=run.pk), by=researcher)
        if release.checks_needed == 1:
            release = output_check(release=release, by=steward, approve=True)
        released = f", release {release.status}"
    recorded = Participation.objects.filter(study=study, grant__status="recorded").count()
    return (
        f"research demo: study recruiting, {joined} joined ({recorded} recorded on chain), run {run.status}{released}"
    )
