"""FHIR ResearchStudy and ResearchSubject: each readable by the roles entitled to it, 404 for everyone else."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.services import user_create
from consent.fhir import consent_id
from research.fhir import DUO_TERMS
from research.models import Study
from research.services import FHIR_STATUS, study_create, study_transition
from tests.api.conftest import bearer
from tests.patient_device import participation_join_signed, participation_withdraw_signed
from tests.research.conftest import make_patient, recruiting_study, relay_all, spec  # noqa: F401

pytestmark = pytest.mark.django_db
SCOPES = "user/ResearchStudy.rs user/ResearchSubject.rs"


def _get(token: str, url: str):  # type: ignore[no-untyped-def]
    return Client().get(url, **bearer(token))


def test_the_researcher_on_the_study_and_a_steward_read_it_as_a_research_study(
    recruiting_study,  # noqa: F811
    researcher,
    steward,
    token_for,
):
    study = recruiting_study()

    mine = _get(token_for(researcher, scope=SCOPES), f"/fhir/ResearchStudy/{study.pk}")
    reviewed = _get(token_for(steward, scope=SCOPES), f"/fhir/ResearchStudy/{study.pk}")

    assert (mine.status_code, reviewed.status_code) == (200, 200)
    body = mine.json()
    assert (body["resourceType"], body["id"], body["status"]) == ("ResearchStudy", str(study.pk), "active")
    assert body["identifier"] == [{"system": "urn:healthledger:research:spec-hash", "value": study.spec_hash}]
    assert [c["coding"][0]["code"] for c in body["category"]] == [DUO_TERMS[c] for c in ("HMB", "IRB", "NCU")]
    assert reviewed.json() == body


def test_another_researcher_and_a_clinician_get_404_for_the_study_and_see_an_empty_search(
    recruiting_study,  # noqa: F811
    clinician,
    token_for,
):
    study = recruiting_study()
    stranger = user_create(username="rex_other_lab", password=None, role="researcher")

    for user in (stranger, clinician):
        token = token_for(user, scope=SCOPES)
        read = _get(token, f"/fhir/ResearchStudy/{study.pk}")
        search = _get(token, "/fhir/ResearchStudy")
        assert read.status_code == 404
        assert read.json()["resourceType"] == "OperationOutcome"
        assert (search.status_code, search.json()["total"]) == (200, 0)


@pytest.mark.parametrize(
    ("steps", "status"),
    [
        ([], "in-review"),
        (["submitted", "in-review", "approved"], "approved"),
        (["submitted", "in-review", "rejected"], "disapproved"),
        (["submitted", "in-review", "approved", "recruiting"], "active"),
        (["submitted", "in-review", "approved", "recruiting", "active"], "closed-to-accrual"),
        (["submitted", "in-review", "approved", "recruiting", "suspended"], "temporarily-closed-to-accrual"),
        (["submitted", "in-review", "approved", "recruiting", "revoked"], "administratively-completed"),
        (["submitted", "withdrawn"], "withdrawn"),
        (["submitted", "in-review", "approved", "recruiting", "closed"], "completed"),
    ],
)
def test_each_study_state_has_its_research_study_status(deployed, researcher, steward, token_for, steps, status):
    study = study_create(by=researcher, spec=spec())
    for to in steps:
        by = steward if to in ("in-review", "approved", "rejected", "suspended", "revoked") else researcher
        study = study_transition(study=study, to=to, by=by, reason="because")

    body = _get(token_for(researcher, scope=SCOPES), f"/fhir/ResearchStudy/{study.pk}").json()

    assert body["status"] == status == FHIR_STATUS[Study.objects.get(pk=study.pk).state]


def test_a_patient_reads_her_own_research_subject_pointing_at_her_consent(
    recruiting_study,  # noqa: F811
    make_patient,  # noqa: F811
    token_for,
):
    study = recruiting_study()
    patient = make_patient()
    joined = participation_join_signed(study=study, by=patient.user)
    relay_all()
    token = token_for(patient.user, scope=SCOPES)

    read = _get(token, f"/fhir/ResearchSubject/{joined.pk}")
    found = _get(token, f"/fhir/ResearchSubject?study={study.pk}")
    the_study = _get(token, f"/fhir/ResearchStudy/{study.pk}")

    assert read.status_code == 200
    body = read.json()
    assert (body["status"], body["study"], body["individual"]) == (
        "on-study",
        {"reference": f"ResearchStudy/{study.pk}"},
        {"reference": f"Patient/{patient.fhir_id}"},
    )
    assert body["consent"] == {"reference": f"Consent/{consent_id(joined.grant)}"}
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [str(joined.pk)]
    assert the_study.status_code == 200

    participation_withdraw_signed(participation=joined, by=patient.user)
    assert _get(token, f"/fhir/ResearchSubject/{joined.pk}").json()["status"] == "withdrawn"


def test_nobody_but_the_patient_reads_a_research_subject(
    recruiting_study,  # noqa: F811
    make_patient,  # noqa: F811
    researcher,
    steward,
    clinician,
    token_for,
):
    study = recruiting_study()
    joined = participation_join_signed(study=study, by=make_patient().user)
    other_patient = make_patient()
    relay_all()

    for user in (researcher, steward, clinician, other_patient.user):
        token = token_for(user, scope=SCOPES)
        read = _get(token, f"/fhir/ResearchSubject/{joined.pk}")
        search = _get(token, "/fhir/ResearchSubject")
        assert read.status_code == 404
        assert (search.status_code, search.json()["total"]) == (200, 0)


def test_a_patient_does_not_read_a_study_that_is_neither_hers_nor_recruiting(
    deployed,
    researcher,
    make_patient,  # noqa: F811
    token_for,
):
    draft = study_create(by=researcher, spec=spec())
    token = token_for(make_patient().user, scope=SCOPES)

    assert _get(token, f"/fhir/ResearchStudy/{draft.pk}").status_code == 404
    assert _get(token, "/fhir/ResearchStudy/not-a-uuid").status_code == 404


def test_a_token_without_the_research_study_scope_is_refused(recruiting_study, researcher, token_for):  # noqa: F811
    study = recruiting_study()

    response = _get(token_for(researcher, scope="user/Observation.rs"), f"/fhir/ResearchStudy/{study.pk}")

    assert response.status_code == 403


def test_the_capability_statement_lists_each_research_type_once_with_its_search_parameters():
    body = Client().get("/fhir/metadata").json()

    listed = [r for r in body["rest"][0]["resource"] if r["type"] in ("ResearchStudy", "ResearchSubject")]

    assert [r["type"] for r in listed] == ["ResearchStudy", "ResearchSubject"]
    assert [p["name"] for p in listed[1]["searchParam"]] == ["_id", "study"]
