"""Runs and releases: queue an approved analysis, ask for an output check, check it, tell participants."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import notification_create
from research import catalogue
from research.models import AnalysisRun, OutputCheck, Release, ReleaseStatus, RunMember, RunStatus, Study
from research.services.studies import RUNNABLE, StudyRefused, _log, is_member, is_pi

logger = logging.getLogger(__name__)


def _tell_participants_of_release(release: Release) -> None:
    """Each participant whose data the released run read hears that a result of her study is out."""
    study = release.run.study
    text = f"A study you joined released a result: {study.title[:80]!r}. Only tables about groups leave the system."
    users = (
        RunMember.objects.filter(run_id=release.run_id, patient__user__isnull=False)
        .values_list("patient__user_id", flat=True)
        .distinct()
    )
    for user_id in users:
        notification_create(user_id=user_id, kind="research.result", text=text, link="/research/mine/")


def analysis_run_request(*, study: Study, by: User, analysis_index: int, enqueue: bool = True) -> AnalysisRun:
    """Queue one of the study's approved analyses; the run task is queued when this commits.

    `enqueue=False` leaves running it to the caller (the demo seed runs it in process).
    """
    from research.runs import analysis_key

    if not is_pi(study, by):
        raise StudyRefused("only the study's principal investigator runs analyses")
    if study.state not in RUNNABLE or study.ends_at <= timezone.now():
        raise StudyRefused("analyses run only while the study is recruiting or active, before its end date")
    analyses = study.spec["analyses"]
    if not 0 <= analysis_index < len(analyses):
        raise StudyRefused(f"the spec declares analyses 0 to {len(analyses) - 1}")
    item = analyses[analysis_index]
    analysis = catalogue.analysis_get(item["id"])
    # An analysis bound to the run's date (a model's as-of date) fixes it, and what it names, in the run's params.
    bind = getattr(analysis, "bind", None)
    params = item["params"] if bind is None else bind(item["params"], day=timezone.now().date())
    with transaction.atomic():
        run = AnalysisRun.objects.create(
            study=study,
            requested_by=by,
            analysis_id=analysis.id,
            analysis_version=analysis.version,
            code_hash=catalogue.code_hash(analysis.id),
            params=params,
            analysis_key=analysis_key(analysis.id, analysis.version, params),
            spec_hash=study.spec_hash,
        )
        _log("research.run.request", by=by, study=study, query=f"study={study.pk} run={run.pk} analysis={analysis.id}")
        run_id = str(run.pk)
        if enqueue:
            transaction.on_commit(lambda: _enqueue_run(run_id))
    return run


def _enqueue_run(run_id: str) -> None:
    """Publish the run's start once it is committed; a broker that is down leaves it to research.sweep."""
    from research.tasks import analysis_run_start

    try:
        analysis_run_start.delay(run_id)
    except Exception as exc:  # any broker failure: the queued row is the record, the sweep re-sends
        logger.warning("run %s not published (%s); the research sweep will send it", run_id, type(exc).__name__)
        return
    AnalysisRun.objects.filter(pk=run_id, dispatched_at__isnull=True).update(dispatched_at=timezone.now())


def release_request(*, run: AnalysisRun, by: User) -> Release:
    """Ask for an output check of a finished run; two checkers when any rule flagged something."""
    if not is_pi(run.study, by):
        raise StudyRefused("only the study's principal investigator asks for a release")
    if run.status != RunStatus.SUCCEEDED or not run.report:
        raise StudyRefused("only a run that passed disclosure control can be released")
    with transaction.atomic():
        release, _ = Release.objects.get_or_create(
            run=run, defaults={"checks_needed": 2 if run.report.get("flagged") else 1}
        )
        _log("research.release.request", by=by, study=run.study, query=f"run={run.pk}")
        for steward in User.objects.filter(role=Role.STEWARD, is_active=True).exclude(
            study_memberships__study=run.study
        ):
            notification_create(
                user_id=steward.pk,
                kind="research.release.request",
                text="An output waits for checking.",
                link="/research/",
            )
    return release


def output_check(*, release: Release, by: User, approve: bool, comment: str = "") -> Release:
    """A steward not on the study checks an output; released once enough independent checkers approve."""
    from research.runs import release_finalise

    with transaction.atomic():
        locked = Release.objects.select_for_update().select_related("run__study").get(pk=release.pk)
        study = locked.run.study
        if by.role != Role.STEWARD:
            raise StudyRefused("only a data steward checks outputs")
        if is_member(study, by):
            raise StudyRefused("separation of duties: you cannot check an output of a study you are on")
        if locked.status != ReleaseStatus.PENDING:
            raise StudyRefused(f"this output is already {locked.status}")
        if not approve and not comment.strip():
            raise StudyRefused("a reason is required to refuse an output")
        OutputCheck.objects.create(release=locked, checker=by, approve=approve, comment=comment.strip())
        verb = "approve" if approve else "refuse"
        _log(f"research.release.check.{verb}", by=by, study=study, query=f"run={locked.run_id}")
        if not approve:
            locked.status = ReleaseStatus.REFUSED
            locked.save(update_fields=["status"])
        elif locked.checks.filter(approve=True).count() >= locked.checks_needed:
            release_finalise(release=locked, by=by)
            if locked.status == ReleaseStatus.RELEASED:
                _tell_participants_of_release(locked)
    return locked
