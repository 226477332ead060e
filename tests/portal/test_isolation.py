"""The personas who must not see: another patient's pages, records, grants and log entries are out of reach.

Every id below exists, but belongs to Bob; Alice gets exactly the page an invented id gets.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from audit.models import AccessLogEntry
from records.models import Resource
from tests.patient_device import grant_issue_signed

pytestmark = pytest.mark.django_db
CSRF = re.compile(rb'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]+')


def _page(response) -> bytes:  # type: ignore[no-untyped-def]
    """The page without its per-response CSRF masking, which differs on every response."""
    return CSRF.sub(rb"\1", response.content)


def _bob_observation(bob_record) -> Resource:  # type: ignore[no-untyped-def]
    return Resource.objects.filter(patient=bob_record, resource_type="Observation").order_by("pk").first()


def test_bobs_resource_id_in_alices_record_url_is_the_same_404_as_an_invented_one(alice, bob_record) -> None:
    theirs = alice.get(f"/record/Observation/{_bob_observation(bob_record).fhir_id}/")
    invented = alice.get("/record/Observation/00000000-0000-4000-8000-000000000000/")

    assert theirs.status_code == invented.status_code == 404
    assert _page(theirs) == _page(invented)


def test_alices_charts_and_export_hold_none_of_bobs_observations(alice, alice_record, bob_record) -> None:
    bobs = set(Resource.objects.filter(patient=bob_record).values_list("fhir_id", flat=True))

    chart = alice.get("/record/charts/blood-pressure.json").json()
    export = alice.get("/record/export/").content.decode()

    refs = {p["ref"].split("/")[1] for s in chart["series"] for p in s["points"]}
    assert refs
    assert not refs & bobs
    assert not any(fhir_id in export for fhir_id in bobs)


def test_bobs_grant_cannot_be_seen_or_revoked_by_alice(alice, issue_grant, bob, other_patient, clinician) -> None:
    from datetime import timedelta

    from django.utils import timezone

    bobs = grant_issue_signed(
        patient=other_patient,
        by=other_patient.user,
        grantee=clinician,
        resource_types=["Observation"],
        actions=["read"],
        purpose="TREAT",
        not_before=timezone.now(),
        not_after=timezone.now() + timedelta(days=1),
    )

    assert alice.get(f"/sharing/{bobs.pk}/revoke/").status_code == 404
    assert alice.post(f"/sharing/{bobs.pk}/revoke/").status_code == 404
    assert bobs.pk not in alice.get("/sharing/").content.decode()
    bobs.refresh_from_db()
    assert bobs.status == "pending"


def test_bobs_access_log_entry_is_not_found_from_alices_log(alice, bob_record) -> None:
    bobs_entry = AccessLogEntry.objects.filter(patient_ref=bob_record.pk).first()

    assert alice.get(f"/access/{bobs_entry.pk}/").status_code == 404
    assert f'id="entry-{bobs_entry.pk}"' not in alice.get("/access/?mine=1").content.decode()


def test_a_clinician_without_a_grant_cannot_open_the_patients_page(mallory, issue_grant, alice_record) -> None:
    issue_grant()  # Alice shares with Carol, not Mallory

    response = mallory.get(f"/clinician/patients/{alice_record.pk}/?type=Observation")

    assert response.status_code == 404
    assert "Alice" not in mallory.get("/clinician/").content.decode()


def test_a_clinician_cannot_open_patient_pages_and_a_patient_cannot_open_clinician_pages(alice, carol) -> None:
    assert carol.get("/dashboard/").status_code == 403
    assert carol.get("/record/export/").status_code == 403
    assert alice.get("/clinician/").status_code == 403


@pytest.mark.parametrize("path", ["/dashboard/", "/record/", "/record/export/", "/access/", "/sharing/", "/erase/"])
def test_a_stranger_is_sent_to_sign_in(db, path) -> None:  # type: ignore[no-untyped-def]
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


def test_a_timed_out_htmx_request_redirects_the_page_to_sign_in(db) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/record/timeline/conditions/", HTTP_HX_REQUEST="true")

    assert (response.status_code, response["HX-Redirect"]) == (401, "/login/")
