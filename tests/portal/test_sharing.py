"""Granting a clinician from the directory, the grant list with chain status, revoking with a confirmation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import ClinicianProfile, User
from consent.models import Grant
from records.models import Patient
from tests.patient_device import device_of
from tests.portal.conftest import sign_and_post

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def her_key(request) -> None:  # type: ignore[no-untyped-def]
    """Alice created her key in her browser (registered against the deployed contract) before she shares."""
    if "deployed" in request.fixturenames:
        request.getfixturevalue("deployed")
        device_of(request.getfixturevalue("patient"))


def _form(clinician, **overrides: object) -> dict[str, object]:  # type: ignore[no-untyped-def]
    data: dict[str, object] = {
        "grantee": clinician.pk,
        "what": ["measurements", "conditions"],
        "purpose": "TREAT",
        "actions": ["read"],
        "duration": "30d",
    }
    data.update(overrides)
    return data


def _share(client, clinician, **overrides: object):  # type: ignore[no-untyped-def]
    """Step 2 then step 3 of the guided form, her browser signing the review's typed data with her key."""
    what = client.post("/sharing/new/what/", _form(clinician, **overrides))
    if what.status_code != 302:
        return what
    assert what["Location"] == "/sharing/new/review/"
    patient = Patient.objects.get(user_id=client.session["_auth_user_id"])
    return sign_and_post(client, "/sharing/new/review/", patient)


def test_granting_from_the_form_signs_a_pending_grant_for_the_chosen_clinician(
    alice, alice_record, clinician, deployed
) -> None:
    before = timezone.now()

    response = _share(alice, clinician)
    after = timezone.now()

    grant = Grant.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/sharing/?granted={grant.pk}#grant-{grant.pk}"
    assert (grant.grantee, grant.resource_types, grant.actions, grant.purpose, grant.status) == (
        clinician,
        ["Condition", "Observation"],
        ["read"],
        "TREAT",
        "pending",
    )
    # Whole seconds on chain: the end is 30 days after the form was read, to the second.
    assert before + timedelta(days=30, seconds=-1) <= grant.not_after <= after + timedelta(days=30)


def test_nothing_is_granted_before_the_review_is_confirmed(alice, alice_record, clinician, deployed) -> None:
    alice.post("/sharing/new/what/", _form(clinician))

    review = alice.get("/sharing/new/review/")

    assert review.status_code == 200
    assert "What you are signing, in plain words" in review.content.decode()
    assert not Grant.objects.exists()


def test_the_review_says_who_what_why_and_until_when_in_plain_words(alice, alice_record, clinician, deployed) -> None:
    ClinicianProfile.objects.create(
        user=clinician, title="Dr", organisation="Riverside Clinic", specialty="General practice"
    )
    User.objects.filter(pk=clinician.pk).update(first_name="Jane", last_name="Smith")
    alice.post("/sharing/new/what/", _form(clinician, what=["labs"], duration="custom", ends="2027-03-03T17:00"))

    page = alice.get("/sharing/new/review/").content.decode()

    assert (
        "Dr Jane Smith at Riverside Clinic can see your lab results, for your care, until 3 March 2027 at 17:00."
        in page
    )
    _share(alice, clinician, what=["labs"], duration="custom", ends="2027-03-03T17:00")
    grant = Grant.objects.get()
    assert grant.resource_types == ["Observation"]
    assert grant.categories == ["Observation:http://terminology.hl7.org/CodeSystem/observation-category|laboratory"]
    listing = alice.get("/sharing/").content.decode()
    assert "Dr Jane Smith at Riverside Clinic" in listing
    assert "may see" in listing


def test_dates_are_read_and_said_in_her_own_time_zone(alice, alice_record, patient_user, clinician, deployed) -> None:
    from portal.models import Preference

    Preference.objects.create(user=patient_user, time_zone="America/New_York")
    alice.post("/sharing/new/what/", _form(clinician, duration="custom", ends="2027-03-03T17:00"))

    page = alice.get("/sharing/new/review/").content.decode()

    assert "until 3 March 2027 at 17:00." in page
    _share(alice, clinician, duration="custom", ends="2027-03-03T17:00")
    assert Grant.objects.get().not_after.isoformat() == "2027-03-03T22:00:00+00:00"


def test_lab_results_and_medications_is_one_grant_narrowing_only_the_observations(
    alice, alice_record, clinician, deployed
) -> None:
    ClinicianProfile.objects.create(
        user=clinician, title="Dr", organisation="Riverside Clinic", specialty="General practice"
    )
    User.objects.filter(pk=clinician.pk).update(first_name="Jane", last_name="Smith")
    what = alice.get(f"/sharing/new/what/?clinician={clinician.pk}").content.decode()
    assert "measurements and test results are shared" not in what  # no widening to warn of
    chosen = _form(clinician, what=["labs", "medications"], duration="custom", ends="2027-03-03T17:00")
    alice.post("/sharing/new/what/", chosen)

    page = alice.get("/sharing/new/review/").content.decode()

    assert (
        "Dr Jane Smith at Riverside Clinic can see your lab results and medications, for your care,"
        " until 3 March 2027 at 17:00." in page
    )
    _share(alice, clinician, what=["labs", "medications"], duration="custom", ends="2027-03-03T17:00")
    grant = Grant.objects.get()
    assert (grant.resource_types, grant.categories) == (
        ["MedicationRequest", "Observation"],
        ["Observation:http://terminology.hl7.org/CodeSystem/observation-category|laboratory"],
    )
    listing = alice.get("/sharing/").content.decode()
    assert "Prescription, Measurement or test result (only: Lab results)" in listing


def test_all_measurements_beside_lab_results_leaves_observations_unnarrowed(
    alice, alice_record, clinician, deployed
) -> None:
    alice.post("/sharing/new/what/", _form(clinician, what=["labs", "measurements", "medications"]))

    page = alice.get("/sharing/new/review/").content.decode()

    assert "can see your measurements and test results and medications, for your care" in page
    _share(alice, clinician, what=["labs", "measurements", "medications"])
    grant = Grant.objects.get()
    assert (grant.resource_types, grant.categories) == (["MedicationRequest", "Observation"], [])


def test_sharing_only_some_kinds_of_results_grants_observations_narrowed_to_those_categories(
    alice, alice_record, clinician, deployed
) -> None:
    _share(alice, clinician, what=["vitals", "labs"])

    grant = Grant.objects.get()
    assert grant.resource_types == ["Observation"]
    assert grant.categories == [
        "Observation:http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        "Observation:http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
    ]


def test_a_grant_with_nothing_chosen_or_an_end_in_the_past_is_refused_with_the_reason(
    alice, alice_record, clinician, deployed
) -> None:
    nothing = _share(alice, clinician, what=[])
    past = _share(alice, clinician, duration="custom", ends="2001-01-01T00:00")

    assert nothing.status_code == past.status_code == 400
    assert "Choose at least one kind of record." in nothing.content.decode()
    assert "That end is already in the past." in past.content.decode()
    assert not Grant.objects.exists()


def test_the_directory_lists_clinicians_only_and_searches_name_organisation_and_specialty(
    alice, patient_user, clinician, other_clinician, researcher, other_patient
) -> None:
    ClinicianProfile.objects.create(user=clinician, organisation="Riverside Clinic", specialty="Cardiology")
    User.objects.filter(pk=patient_user.pk).update(first_name="Alice", last_name="Riverside")

    everyone = alice.get("/sharing/new/").content.decode()
    by_org = alice.get("/sharing/new/?q=riverside").content.decode()
    by_specialty = alice.get("/sharing/new/?q=cardio").content.decode()
    by_patient = alice.get(f"/sharing/new/?q={other_patient.user.username}").content.decode()

    assert f"?clinician={clinician.pk}" in everyone
    assert f"?clinician={other_clinician.pk}" in everyone
    assert researcher.username not in everyone
    assert other_patient.user.username not in everyone
    assert f"?clinician={clinician.pk}" in by_org
    assert "Riverside Clinic" in by_org
    assert "Alice" not in by_org.split("<main", 1)[1].split("</main>", 1)[0]
    assert f"?clinician={other_clinician.pk}" not in by_org
    assert f"?clinician={clinician.pk}" in by_specialty
    assert "No clinician matches" in by_patient


def test_only_a_clinician_can_be_chosen(alice, alice_record, clinician, researcher, other_patient) -> None:
    assert alice.get(f"/sharing/new/what/?clinician={researcher.pk}").status_code == 404
    assert alice.get(f"/sharing/new/what/?clinician={other_patient.user.pk}").status_code == 404
    assert alice.get("/sharing/new/what/?clinician=nonsense").status_code == 404
    assert alice.post("/sharing/new/what/", _form(researcher)).status_code == 404
    assert alice.get(f"/sharing/new/what/?clinician={clinician.pk}").status_code == 200


def test_the_sharing_steps_are_the_patients_alone(carol, clinician) -> None:
    for url in ("/sharing/new/", f"/sharing/new/what/?clinician={clinician.pk}", "/sharing/new/review/"):
        response = carol.get(url)
        assert response.status_code in (302, 403), url
        assert "dr_carol" not in response.content.decode().split("<main", 1)[-1]


def test_the_review_without_a_draft_asks_to_start_again(alice, alice_record) -> None:
    response = alice.post("/sharing/new/review/")

    assert response.status_code == 400
    assert "Start again from the sharing page." in response.content.decode()
    assert not Grant.objects.exists()


def test_revoking_asks_first_then_ends_access_at_once(alice, issue_grant) -> None:
    grant = issue_grant()

    confirm = alice.get(f"/sharing/{grant.pk}/revoke/")
    assert "Yes, revoke access" in confirm.content.decode()
    assert Grant.objects.get(pk=grant.pk).status == "recorded"
    response = sign_and_post(alice, f"/sharing/{grant.pk}/revoke/", grant.patient)

    assert response.status_code == 302
    assert Grant.objects.get(pk=grant.pk).status == "revoked"
    assert "Revoked" in alice.get("/sharing/").content.decode()


def test_an_expired_grant_is_listed_as_expired(alice, issue_grant) -> None:
    grant = issue_grant()
    Grant.objects.filter(pk=grant.pk).update(
        not_before=timezone.now() - timedelta(days=3), not_after=timezone.now() - timedelta(days=1)
    )

    assert "Expired" in alice.get("/sharing/").content.decode()


def test_the_dashboard_shows_what_is_shared_and_what_ends_within_a_week(alice, issue_grant) -> None:
    issue_grant(not_after=timezone.now() + timedelta(days=3))

    page = alice.get("/dashboard/").content.decode()

    assert "dr_carol" in page
    assert "Ending within a week" in page
    assert "Share again" in page
