"""The clinician's page: who shared what until when, and their records read through the gate."""

from __future__ import annotations

import pytest

from audit.models import AccessLogEntry
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db


def test_the_clinician_sees_the_patient_who_shared_and_until_when(carol, issue_grant, patient_user) -> None:
    grant = issue_grant()

    page = carol.get("/clinician/").content.decode()

    assert f"/clinician/patients/{grant.patient_id}/" in page
    assert grant.not_after.strftime("%Y-%m-%d %H:%M") in page


def test_the_clinician_reads_a_shared_observation_through_the_gate_under_the_grant(
    carol, issue_grant, an_observation
) -> None:
    grant = issue_grant()

    listing = carol.get(f"/clinician/patients/{grant.patient_id}/?type=Observation")
    detail = carol.get(f"/clinician/patients/{grant.patient_id}/Observation/{an_observation.fhir_id}/")

    assert an_observation.fhir_id in listing.content.decode()
    assert detail.status_code == 200
    entry = AccessLogEntry.objects.filter(action="records.read").latest("id")
    assert (entry.purpose, entry.grant_ref, entry.outcome) == ("TREAT", grant.pk, "permit")


def test_after_revocation_the_clinicians_next_read_is_denied_and_logged(
    carol, issue_grant, an_observation, patient_user
) -> None:
    grant = issue_grant()
    grant_revoke_signed(grant=grant, by=patient_user)

    response = carol.get(f"/clinician/patients/{grant.patient_id}/Observation/{an_observation.fhir_id}/")

    assert response.status_code == 404
    entry = AccessLogEntry.objects.filter(action="records.read").latest("id")
    assert entry.outcome == "deny"


def test_types_the_grant_does_not_cover_are_not_found(carol, issue_grant, alice_record) -> None:
    grant = issue_grant()

    assert carol.get(f"/clinician/patients/{grant.patient_id}/?type=Condition").status_code == 404


def test_after_erasure_the_clinician_sees_record_erased_and_not_her_name(
    carol, alice, issue_grant, patient_user
) -> None:
    from accounts.models import User
    from tests.portal.conftest import PASSWORD, erase_signed

    User.objects.filter(pk=patient_user.pk).update(first_name="Alice", last_name="Liddell")
    grant = issue_grant()
    assert "Alice Liddell" in carol.get("/clinician/").content.decode()

    erased = erase_signed(alice, grant.patient, {"confirmation": "erase my record", "password": PASSWORD})
    assert erased.status_code == 200
    listing = carol.get("/clinician/").content.decode()
    patient_page = carol.get(f"/clinician/patients/{grant.patient_id}/").content.decode()

    for page in (listing, patient_page):
        assert "Record erased" in page
        assert "Alice" not in page
        assert "Liddell" not in page
        assert patient_user.username not in page
