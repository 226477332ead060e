"""Patients join a study by a grant signed with their key, and leave by revoking it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from audit.models import Outcome
from audit.services import LogEvent, access_log_append
from consent.models import Grant
from consent.purposes import Action, Purpose
from consent.services import grant_draft, grant_issue, grant_revoke
from healthledger.errors import ConsentDenied
from records.models import Patient
from research.models import Participation, Study
from research.services.studies import JOINABLE, RUNNABLE, StudyRefused, _actor


def _join_terms(study: Study, by: User, *, carry_over: bool = False) -> dict[str, Any]:
    """The grant a patient signs to join: the study's account, HRESCH, run-analysis on its data, until its end."""
    patient = Patient.objects.filter(user=by, erased_at__isnull=True).first()
    if patient is None or by.role != Role.PATIENT:
        raise ConsentDenied("only a patient with a record can join a study")
    now = timezone.now()
    # A join carried over to a changed study's new version (research.preferences) may land once it is active.
    if study.state not in (RUNNABLE if carry_over else JOINABLE) or study.ends_at <= now or study.account_id is None:
        raise StudyRefused("this study is not recruiting")
    current = Participation.objects.filter(study=study, patient=patient, withdrawn_at__isnull=True).first()
    if current is not None and current.spec_hash == study.spec_hash:
        raise StudyRefused("you already take part in this study")
    return {
        "patient": patient,
        "by": by,
        "grantee": study.account,
        "resource_types": study.spec["data"],
        "actions": [Action.RUN_ANALYSIS],
        "purpose": Purpose.HRESCH,
        "not_before": now - timedelta(seconds=1),
        "not_after": study.ends_at,
    }


def participation_draft(*, study: Study, by: User) -> Grant:
    """The unsaved grant a patient who holds her own key signs in her browser to join (consent.services.grant_draft)."""
    return grant_draft(**_join_terms(study, by))


def participation_join(
    *,
    study: Study,
    by: User,
    signature: str | None,
    salt: str | None = None,
    commitment_salt: str | None = None,
    not_before: datetime | None = None,
    carry_over: bool = False,
) -> Participation:
    """The patient joins: a grant signed with their key to the study's account, HRESCH, until the study ends.

    She passes her `signature` (made with her key, in her browser) over participation_draft's typed data,
    with that draft's salts and start; without one, SignatureRequired before anything is stored or queued.
    The server signs nothing in her name.
    """
    terms = _join_terms(study, by, carry_over=carry_over)
    patient = terms["patient"]
    if not_before is not None:
        terms["not_before"] = not_before
    with transaction.atomic():
        # Her signature is checked first (grant_issue): a refused join changes nothing.
        grant = grant_issue(**terms, signature=signature, salt=salt, commitment_salt=commitment_salt)
        # Joining a changed study's new version supersedes the join of the old one (never read again).
        Participation.objects.filter(study=study, patient=patient, withdrawn_at__isnull=True).exclude(
            spec_hash=study.spec_hash
        ).update(withdrawn_at=timezone.now())
        joined = Participation.objects.create(study=study, patient=patient, grant=grant, spec_hash=study.spec_hash)
        access_log_append(
            event=LogEvent(
                actor=_actor(by),
                action="research.participation.join",
                outcome=Outcome.PERMIT,
                patient_ref=patient.pk,
                purpose=Purpose.HRESCH,
                grant_ref=grant.id,
                query=f"study={study.pk} spec={study.spec_hash}",
            )
        )
    return joined


def participation_withdraw(*, participation: Participation, by: User, signature: str | None) -> Participation:
    """Leave the study: the grant is revoked, so the next read is denied. Released results stay released.

    `signature`: her signature over the revocation (revoke_typed_data of the study's grant); required.
    """
    with transaction.atomic():
        locked = Participation.objects.select_for_update().select_related("grant").get(pk=participation.pk)
        grant_revoke(grant=locked.grant, by=by, signature=signature)  # refuses anyone but the patient
        if locked.withdrawn_at is None:
            locked.withdrawn_at = timezone.now()
            locked.save(update_fields=["withdrawn_at"])
            access_log_append(
                event=LogEvent(
                    actor=_actor(by),
                    action="research.participation.withdraw",
                    outcome=Outcome.PERMIT,
                    patient_ref=locked.patient_id,
                    purpose=Purpose.HRESCH,
                    grant_ref=locked.grant_id,
                    query=f"study={locked.study_id}",
                )
            )
    return locked


def participation_for(*, user: User, study: Study) -> Participation | None:
    return Participation.objects.filter(study=study, patient__user=user, withdrawn_at__isnull=True).first()


def grant_of(participation: Participation) -> Grant:
    return Grant.objects.get(pk=participation.grant_id)
