"""What the research pages and API show: invitations, a patient's own research, a researcher's studies,
the steward's queues. Nothing here returns a patient's identity or a per-patient value to a researcher:
studies, runs and releases carry aggregate tables, rounded sizes and commitments only.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from accounts.models import Role, User
from audit.models import AccessLogEntry
from records.models import Patient
from research import catalogue, disclosure, specs
from research.models import AnalysisRun, Participation, Release, ReleaseStatus, Study, StudyState
from research.preferences import duo_matches, preference_of
from research.runs import cohort_inclusion
from research.services import FHIR_STATUS, JOINABLE

REVIEW_STATES = (StudyState.SUBMITTED, StudyState.IN_REVIEW)


def invitations(*, patient: Patient) -> list[Study]:
    """Every recruiting study the patient has not joined and her standing DUO preferences match: eligibility
    is decided later, inside the worker, so an invitation says nothing about the patient's record."""
    joined = {
        (study_id, spec)
        for study_id, spec in Participation.objects.filter(patient=patient, withdrawn_at__isnull=True).values_list(
            "study_id", "spec_hash"
        )
    }
    # A study that changed since she joined invites her again: her old join is not read.
    recruiting = Study.objects.filter(state__in=JOINABLE).order_by("-created_at")
    allowed = preference_of(patient).duo  # only studies whose DUO codes fit her standing preferences
    return [
        study
        for study in recruiting
        if (study.pk, study.spec_hash) not in joined and duo_matches(allowed=allowed, spec=study.spec)
    ]


@dataclass(frozen=True)
class RunOfMine:
    run: AnalysisRun
    reads: int
    proof: dict[str, Any] | None


@dataclass(frozen=True)
class MyStudy:
    study: Study
    participation: Participation
    runs: list[RunOfMine]
    releases: list[Release]


def my_research(*, patient: Patient) -> list[MyStudy]:
    """Studies the patient joined (and left), each run that read their data with its log entries and their
    inclusion proof in the run's cohort commitment, and every release of the study."""
    out = []
    for participation in Participation.objects.filter(patient=patient).select_related("study").order_by("-joined_at"):
        study = participation.study
        runs = []
        for run in AnalysisRun.objects.filter(study=study, members__participation=participation).order_by(
            "-created_at"
        ):
            reads = AccessLogEntry.objects.filter(job_id=str(run.pk), patient_ref=patient.pk).count()
            runs.append(
                RunOfMine(run=run, reads=reads, proof=cohort_inclusion(run=run, grant_id=participation.grant_id))
            )
        releases = list(Release.objects.filter(run__study=study, status=ReleaseStatus.RELEASED).select_related("run"))
        out.append(MyStudy(study=study, participation=participation, runs=runs, releases=releases))
    return out


def studies_for(*, user: User) -> QuerySet[Study]:
    """A researcher's studies (PI or co-investigator); a steward sees every study."""
    if user.role == Role.STEWARD:
        return Study.objects.order_by("-created_at")
    return Study.objects.filter(members__user=user).order_by("-created_at")


def review_queue(*, steward: User) -> list[Study]:
    """Study requests waiting for a steward who is not on them."""
    return list(Study.objects.filter(state__in=REVIEW_STATES).exclude(members__user=steward).order_by("updated_at"))


def output_queue(*, steward: User) -> list[Release]:
    """Outputs waiting for a check by this steward (not on the study, not checked by them yet)."""
    return list(
        Release.objects.filter(status=ReleaseStatus.PENDING)
        .exclude(run__study__members__user=steward)
        .exclude(checks__checker=steward)
        .select_related("run__study")
        .order_by("requested_at")
    )


def study_public(study: Study) -> dict[str, Any]:
    """A study as the researcher API shows it: spec, state, FHIR status, rounded participant count."""
    joined = Participation.objects.filter(study=study, withdrawn_at__isnull=True).count()
    t = disclosure.thresholds()
    return {
        "id": str(study.pk),
        "title": study.title,
        "state": study.state,
        "fhir_status": FHIR_STATUS[study.state],
        "version": study.version,
        "spec": study.spec,
        "spec_hash": study.spec_hash,
        "ends_at": study.ends_at.isoformat(),
        "participants": disclosure.round_to(joined, t.rounding) if joined >= t.count else f"fewer than {t.count}",
        "analyses": [
            {"index": i, "id": a["id"], "params": a["params"], "words": catalogue.plain_words(a)}
            for i, a in enumerate(study.spec["analyses"])
        ],
    }


def run_public(run: AnalysisRun, *, for_checker: bool = False) -> dict[str, Any]:
    """A run as its researcher sees it: the disclosure report always, the table only once released.

    The output checker (`for_checker`) sees the table that waits for their check.
    """
    t = disclosure.thresholds()
    release = Release.objects.filter(run=run).first()
    released = release is not None and release.status == ReleaseStatus.RELEASED
    return {
        "id": str(run.pk),
        "study": str(run.study_id),
        "analysis": {"id": run.analysis_id, "version": run.analysis_version, "code_hash": run.code_hash},
        "params": run.params,
        "status": run.status,
        "status_reason": run.status_reason,
        "cohort_size": disclosure.round_to(run.cohort_size, t.rounding) if run.cohort_size >= t.count else None,
        "cohort_commitment": run.cohort_root,
        "report": run.report,
        "result": run.result if run.status == "succeeded" and (released or for_checker) else None,
        "release": None if release is None else {"id": str(release.pk), "status": release.status},
    }


def release_public(release: Release) -> dict[str, Any]:
    return {
        "id": str(release.pk),
        "status": release.status,
        "released_at": release.released_at.isoformat() if release.released_at else None,
        "table": release.run.result if release.status == ReleaseStatus.RELEASED else None,
        "report": release.run.report,
        "provenance": release.provenance,
    }


def release_csv(release: Release) -> str:
    """The released table as CSV with a flag per cell, then the provenance as comment lines."""
    table = release.run.result or {}
    out = io.StringIO()
    writer = csv.writer(out)
    if table.get("kind") == "counts":
        writer.writerow([*table["strata"], "count", "percent", "flag"])
        for cell in table["cells"]:
            row = [cell["group"][s] for s in table["strata"]]
            writer.writerow([*row, _blank(cell["count"]), _blank(cell["percent"]), cell["flag"]])
        for label, value in table["totals"].items():
            writer.writerow([f"total {label}", *[""] * (len(table["strata"]) - 1), _blank(value), "", ""])
    elif table.get("kind") in ("linear-regression", "logistic-regression"):
        writer.writerow(["term", "estimate", "se", "ci95_low", "ci95_high", "p", "n", "flag"])
        for row in table.get("coefficients") or []:
            low, high = row["ci95"]
            writer.writerow([row["term"], *(_blank(row[k]) for k in ("estimate", "se")), _blank(low), _blank(high),
                             _blank(row["p"]), _blank(table.get("n")), table.get("flag", "")])  # fmt: skip
    elif table.get("kind") == "incidence":
        writer.writerow(["statistic", "value", "flag"])
        for name in ("at_risk", "cases", "person_years", "proportion_percent", "rate_per_1000_person_years"):
            writer.writerow([name, _blank(table.get(name)), table.get("flag", "")])
    elif table.get("kind") == "score-distribution":
        writer.writerow(["table", "group", "count", "percent", "flag"])
        for part, stratum in (("bands", "band"), ("refused", "reason")):
            for cell in table[part]["cells"]:
                writer.writerow([part, cell["group"][stratum], _blank(cell["count"]), _blank(cell["percent"]),
                                 cell["flag"]])  # fmt: skip
            writer.writerow([part, "total", _blank(table[part]["totals"].get("total")), "", ""])
        for name in ("n", "mean", "sd"):
            writer.writerow(["statistic", name, _blank(table.get(name)), "", table.get("flag", "")])
    else:
        writer.writerow(["statistic", "value", "unit", "flag"])
        for name in ("n", "mean", "sd"):
            writer.writerow([name, _blank(table.get(name)), table.get("unit", ""), table.get("flag", "")])
        for name, value in (table.get("quantiles") or {}).items():
            writer.writerow([name, value, table.get("unit", ""), table.get("flag", "")])
    for key, value in release.provenance.items():
        writer.writerow([f"# {key}", value])
    return out.getvalue()


def release_measure_report(release: Release) -> dict[str, Any] | None:
    """A released count table as a FHIR R4 MeasureReport (summary); None for other tables.

    Suppressed cells are strata without a count, flagged in an extension; every count is the rounded one.
    """
    table = release.run.result or {}
    if table.get("kind") != "counts" or release.status != ReleaseStatus.RELEASED:
        return None
    flag = "urn:healthledger:research:disclosure-flag"
    population = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population",
                              "code": "initial-population"}]}  # fmt: skip
    strata = []
    for cell in table["cells"]:
        entry: dict[str, Any] = {
            "value": {"text": "/".join(cell["group"].values())},
            "extension": [{"url": flag, "valueCode": cell["flag"]}],
            "population": [{"code": population}],
        }
        if cell["count"] is not None:
            entry["population"][0]["count"] = cell["count"]
        strata.append(entry)
    total = table["totals"].get("total")
    group: dict[str, Any] = {
        "population": [{"code": population, **({"count": total} if total is not None else {})}],
        "stratifier": [{"code": [{"text": "/".join(table["strata"])}], "stratum": strata}],
    }
    run = release.run
    return {
        "resourceType": "MeasureReport",
        "id": str(release.pk),
        "status": "complete",
        "type": "summary",
        "measure": f"urn:healthledger:analysis:{run.analysis_id}|{run.analysis_version}",
        "date": release.released_at.isoformat() if release.released_at else None,
        "period": {"start": run.study.created_at.date().isoformat(), "end": run.study.ends_at.date().isoformat()},
        "group": [group],
    }


def _blank(value: object) -> object:
    return "" if value is None else value


def card(study: Study) -> dict[str, Any]:
    return specs.study_card(study.spec)
