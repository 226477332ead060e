"""Studies and participations as FHIR R4 ResearchStudy and ResearchSubject, and who may read each.

A ResearchStudy is generated from the study's spec (like the study card): title, summary, the DUO
data-use codes as categories, the spec hash as an identifier, its period and FHIR status
(research.services.FHIR_STATUS, one per state). A ResearchSubject is one patient's participation:
it names the patient and so is readable by that patient only; researchers and stewards never see
who takes part. Anyone not entitled gets what a stranger gets for a resource that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from accounts.models import Role, User
from consent.fhir import consent_id
from research.models import Participation, Study, StudyState
from research.services import FHIR_STATUS, JOINABLE
from research.specs import DUO_CODES

DUO_SYSTEM = "http://purl.obolibrary.org/obo/duo.owl"
# The GA4GH Data Use Ontology term of each code the spec uses.
DUO_TERMS = {
    "GRU": "DUO:0000042",
    "HMB": "DUO:0000006",
    "DS": "DUO:0000007",
    "NCU": "DUO:0000046",
    "NPU": "DUO:0000045",
    "IRB": "DUO:0000021",
    "PUB": "DUO:0000019",
    "TS": "DUO:0000025",
}
SPEC_HASH_SYSTEM = "urn:healthledger:research:spec-hash"
STOPPED = {StudyState.REJECTED, StudyState.REVOKED, StudyState.WITHDRAWN, StudyState.SUSPENDED}


def studies_readable(*, user: User) -> QuerySet[Study]:
    """ResearchStudy: a steward reads every study, a researcher the studies they are on, a patient the
    studies she joined and those recruiting now (every patient is invited to those)."""
    if user.role == Role.STEWARD:
        return Study.objects.all()
    if user.role == Role.RESEARCHER:
        return Study.objects.filter(members__user=user)
    if user.role == Role.PATIENT:
        return Study.objects.filter(
            Q(state__in=JOINABLE)
            | Q(participations__patient__user=user, participations__patient__erased_at__isnull=True)
        ).distinct()
    return Study.objects.none()


def subjects_readable(*, user: User) -> QuerySet[Participation]:
    """ResearchSubject: the patient's own participations only (a subject names its patient)."""
    if user.role != Role.PATIENT:
        return Participation.objects.none()
    return Participation.objects.filter(patient__user=user, patient__erased_at__isnull=True)


def study_as_research_study(study: Study) -> dict[str, Any]:
    spec = study.spec
    resource: dict[str, Any] = {
        "resourceType": "ResearchStudy",
        "id": str(study.pk),
        "meta": {"versionId": str(study.version), "lastUpdated": study.updated_at.isoformat()},
        "identifier": [{"system": SPEC_HASH_SYSTEM, "value": study.spec_hash}],
        "title": spec["title"],
        "status": FHIR_STATUS[StudyState(study.state)],
        "description": spec["summary"],
        "category": [
            {"coding": [{"system": DUO_SYSTEM, "code": DUO_TERMS[code], "display": DUO_CODES[code]}], "text": code}
            for code in spec["duo"]
        ],
        "period": {"start": study.created_at.date().isoformat(), "end": study.ends_at.date().isoformat()},
        "sponsor": {"display": spec["funder"]},
        "site": [{"display": spec["institution"]}],
        "note": [{"text": f"Ethics reference {spec['ethics_ref']}"}],
    }
    if study.state in STOPPED:
        resource["reasonStopped"] = {"text": StudyState(study.state).label}
    return resource


def _subject_status(participation: Participation) -> str:
    study = participation.study
    if participation.withdrawn_at is not None:
        return "withdrawn"
    if participation.spec_hash != study.spec_hash:
        return "candidate"  # the study changed since she joined: asked again, not read
    if study.state in (StudyState.CLOSED, StudyState.REVOKED):
        return "off-study"
    return "on-study"


def participation_as_research_subject(participation: Participation) -> dict[str, Any]:
    period: dict[str, str] = {"start": participation.joined_at.isoformat()}
    if participation.withdrawn_at is not None:
        period["end"] = participation.withdrawn_at.isoformat()
    return {
        "resourceType": "ResearchSubject",
        "id": str(participation.pk),
        "status": _subject_status(participation),
        "period": period,
        "study": {"reference": f"ResearchStudy/{participation.study_id}"},
        "individual": {"reference": f"Patient/{participation.patient.fhir_id}"},
        "consent": {"reference": f"Consent/{consent_id(participation.grant)}"},
    }
