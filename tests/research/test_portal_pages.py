"""The research pages: invitations for everyone, the study card, join and withdraw, "My research";
researcher and steward pages that never show who a participant is."""

from __future__ import annotations

import pytest
from django.test import Client

from research.models import AnalysisRun, Participation
from research.services import analysis_run_request, release_request
from tests.patient_device import device_of
from tests.portal.conftest import page_json, sign_and_post

pytestmark = pytest.mark.django_db


def _client(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def test_every_patient_sees_the_invitation_and_the_card_generated_from_the_spec(recruiting_study, make_patient):
    study = recruiting_study()
    patient = make_patient(diabetic=False)
    client = _client(patient.user)

    page = client.get("/research/mine/")
    card = client.get(f"/research/studies/{study.pk}/")

    assert page.status_code == 200
    assert study.title in page.content.decode()
    assert card.status_code == 200
    text = card.content.decode()
    assert study.spec["summary"] in text
    assert "Results already released cannot be recalled" in text


def test_a_patient_joins_and_withdraws_from_the_card(recruiting_study, make_patient):
    from tests.research.conftest import relay_all

    study = recruiting_study()
    patient = make_patient()
    client = _client(patient.user)

    device = device_of(patient)  # her key, created in her browser
    review = client.post(f"/research/studies/{study.pk}/join/")  # the page she signs
    typed = page_json(review.content.decode(), "typed-data")
    joined = client.post(f"/research/studies/{study.pk}/join/", {"signature": device.sign(typed)})  # type: ignore[arg-type]
    relay_all()
    participation = Participation.objects.get(study=study, patient=patient)
    assert joined.status_code == 302
    assert participation.grant.actions == ["run-analysis"]
    assert (participation.grant.purpose, participation.grant.grantee_id) == ("HRESCH", study.account_id)
    assert participation.grant.not_after == study.ends_at.replace(microsecond=0)

    left = sign_and_post(client, f"/research/studies/{study.pk}/withdraw/", patient)

    participation.refresh_from_db()
    assert left.status_code == 302
    assert participation.withdrawn_at is not None
    assert participation.grant.status == "revoked"


def test_my_research_lists_each_run_that_read_me_with_its_inclusion_proof(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    patients = [make_patient() for _ in range(20)]
    join(study, patients)
    with django_capture_on_commit_callbacks(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=0)

    page = _client(patients[3].user).get("/research/mine/").content.decode()

    run = AnalysisRun.objects.get(pk=run.pk)
    assert f"of {run.cohort_size}" in page
    assert run.cohort_root[:16] in page


def test_researcher_and_steward_pages_show_no_participant_identity_or_value(
    recruiting_study, make_patient, join, researcher, steward, django_capture_on_commit_callbacks
):
    study = recruiting_study()
    patients = [make_patient(cholesterol=177.7 + i) for i in range(20)]
    join(study, patients)
    with django_capture_on_commit_callbacks(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=1)
    release_request(run=AnalysisRun.objects.get(pk=run.pk), by=researcher)

    pages = [
        _client(researcher).get("/research/my-studies/").content.decode(),
        _client(steward).get("/steward/research/").content.decode(),
    ]

    for page in pages:
        assert "Disclosure" in page or "Outputs to check" in page
        for patient in patients:
            assert str(patient.pk) not in page
            assert patient.user.username not in page
            assert patient.fhir_id not in page
        assert "177.7" not in page
        assert "178.7" not in page


def test_a_researcher_cannot_open_the_patient_pages_nor_a_patient_the_researcher_pages(
    recruiting_study, make_patient, researcher
):
    study = recruiting_study()
    patient = make_patient()

    assert _client(researcher).get(f"/research/studies/{study.pk}/").status_code == 403
    assert _client(patient.user).get("/research/my-studies/").status_code == 403
    assert _client(patient.user).get("/steward/research/").status_code == 403


def test_the_dashboard_lists_the_research_invitation(recruiting_study, make_patient):
    study = recruiting_study()
    patient = make_patient()

    page = _client(patient.user).get("/dashboard/").content.decode()

    assert f'href="/research/studies/{study.pk}/"' in page
    assert study.title in page
