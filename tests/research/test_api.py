"""The researcher JSON API: research scopes, studies of one's own only, aggregate outputs only."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.services import user_create
from research.models import AnalysisRun
from research.services import analysis_run_request, output_check, release_request
from tests.api.conftest import bearer
from tests.research.conftest import spec

pytestmark = pytest.mark.django_db
SCOPES = "research.read research.write"


def test_a_researcher_requests_a_study_and_submits_it_through_the_api(researcher, token_for):
    token = token_for(researcher, scope=SCOPES)
    client = Client()

    created = client.post("/api/research/studies", {"spec": spec()}, content_type="application/json", **bearer(token))
    study_id = created.json()["id"]
    submitted = client.post(
        f"/api/research/studies/{study_id}/transitions", {"to": "submitted"}, content_type="application/json",
        **bearer(token),
    )  # fmt: skip
    listed = client.get("/api/research/studies", **bearer(token))

    assert created.status_code == 201
    assert (submitted.status_code, submitted.json()["state"], submitted.json()["fhir_status"]) == (
        200, "submitted", "in-review",
    )  # fmt: skip
    assert [s["id"] for s in listed.json()] == [study_id]


def test_a_bad_spec_is_a_400_with_a_clear_message(researcher, token_for):
    token = token_for(researcher, scope=SCOPES)

    response = Client().post(
        "/api/research/studies", {"spec": spec(duo=["XYZ"])}, content_type="application/json", **bearer(token)
    )

    assert response.status_code == 400
    assert "duo" in response.json()["detail"]


def test_a_token_without_research_scopes_and_a_patient_token_are_refused(researcher, patient_user, token_for):
    fhir_only = token_for(researcher, scope="user/*.rs")
    patient = token_for(patient_user, scope=SCOPES)

    assert Client().get("/api/research/studies", **bearer(fhir_only)).status_code == 403
    assert Client().get("/api/research/studies", **bearer(patient)).status_code == 403
    assert Client().get("/api/research/studies").status_code in (401, 403)


def test_a_researcher_not_on_the_study_gets_404(recruiting_study, token_for):
    study = recruiting_study()
    stranger = user_create(username="rex_research", password=None, role="researcher")
    token = token_for(stranger, scope=SCOPES)

    assert Client().get(f"/api/research/studies/{study.pk}", **bearer(token)).status_code == 404
    assert Client().get(f"/api/research/studies/{study.pk}/runs", **bearer(token)).status_code == 404


def test_no_research_endpoint_reveals_a_participant_or_a_per_patient_value(
    recruiting_study,
    make_patient,
    join,
    researcher,
    steward,
    token_for,
    django_capture_on_commit_callbacks,
):
    study = recruiting_study()
    patients = [make_patient(cholesterol=181.3 + 2 * i) for i in range(20)]
    join(study, patients)
    with django_capture_on_commit_callbacks(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=1)
    run = AnalysisRun.objects.get(pk=run.pk)
    release = release_request(run=run, by=researcher)
    second = user_create(username="sue_steward", password=None, role="steward")
    for checker in (steward, second)[: release.checks_needed]:
        release = output_check(release=release, by=checker, approve=True)
    token = token_for(researcher, scope=SCOPES)
    client = Client()

    bodies = [
        client.get("/api/research/studies", **bearer(token)).content.decode(),
        client.get(f"/api/research/studies/{study.pk}", **bearer(token)).content.decode(),
        client.get(f"/api/research/studies/{study.pk}/runs", **bearer(token)).content.decode(),
        client.get(f"/api/research/runs/{run.pk}", **bearer(token)).content.decode(),
        client.get(f"/api/research/releases/{release.pk}", **bearer(token)).content.decode(),
        client.get(f"/api/research/releases/{release.pk}?as=csv", **bearer(token)).content.decode(),
    ]

    assert release.status == "released"
    assert '"mean"' in bodies[4]
    assert "mean," in bodies[5]
    for body in bodies:
        for patient in patients:
            assert str(patient.pk) not in body
            assert patient.user.username not in body
            assert patient.fhir_id not in body
        for participation in study.participations.all():
            assert participation.grant_id not in body
        assert not any(f"{181.3 + 2 * i:.1f}" in body for i in range(20))


def test_the_researcher_sees_the_check_report_but_not_the_table_before_the_output_check(
    recruiting_study,
    make_patient,
    join,
    researcher,
    token_for,
    django_capture_on_commit_callbacks,
):
    study = recruiting_study()
    join(study, [make_patient() for _ in range(20)])
    with django_capture_on_commit_callbacks(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=1)
    token = token_for(researcher, scope=SCOPES)

    body = Client().get(f"/api/research/runs/{run.pk}", **bearer(token)).json()

    assert body["status"] == "succeeded"
    assert body["result"] is None
    assert {r["id"] for r in body["report"]["rules"]} >= {"SDC-COHORT-MIN", "SDC-STAT-MIN-N", "SDC-DOMINANCE"}


def test_a_released_count_table_is_served_as_a_valid_fhir_measure_report(
    recruiting_study, make_patient, join, researcher, steward, token_for, django_capture_on_commit_callbacks
):
    from fhir.resources.R4B.measurereport import MeasureReport

    study = recruiting_study()
    join(study, [make_patient(sex="female") for _ in range(22)])
    with django_capture_on_commit_callbacks(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=0)
    release = release_request(run=AnalysisRun.objects.get(pk=run.pk), by=researcher)
    second = user_create(username="sue_steward", password=None, role="steward")
    for checker in (steward, second)[: release.checks_needed]:
        release = output_check(release=release, by=checker, approve=True)
    token = token_for(researcher, scope=SCOPES)

    body = Client().get(f"/api/research/releases/{release.pk}?as=measure-report", **bearer(token)).json()

    MeasureReport.model_validate(body)
    stratum = body["group"][0]["stratifier"][0]["stratum"][0]
    assert (stratum["value"]["text"], stratum["population"][0]["count"]) == ("female/absent", 20)
    assert body["group"][0]["population"][0]["count"] == 20
