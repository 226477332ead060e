"""Granting a clinician from the directory, the grant list with chain status, revoking with a confirmation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import Grant
from ledger.outbox import outbox_relay

pytestmark = pytest.mark.django_db


def _form(clinician, **overrides: object) -> dict[str, object]:  # type: ignore[no-untyped-def]
    data: dict[str, object] = {
        "grantee": clinician.pk,
        "scope": "types",
        "resource_types": ["Observation", "Condition"],
        "purpose": "TREAT",
        "actions": ["read"],
        "duration": "30d",
    }
    data.update(overrides)
    return data


def test_granting_from_the_form_signs_a_pending_grant_for_the_chosen_clinician(
    alice, alice_record, clinician, deployed
) -> None:
    before = timezone.now()

    response = alice.post("/sharing/", _form(clinician))

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
    assert timedelta(days=30) - timedelta(seconds=2) <= grant.not_after - before <= timedelta(days=30, seconds=2)


def test_the_list_shows_the_transaction_and_block_once_recorded_on_chain(
    alice, alice_record, clinician, deployed
) -> None:
    alice.post("/sharing/", _form(clinician, duration="24h"))
    outbox_relay()
    outbox_relay()
    grant = Grant.objects.get()

    page = alice.get("/sharing/").content.decode()

    assert grant.status == "recorded"
    assert "Active · recorded on chain" in page
    assert f'title="{grant.tx_hash}"' in page
    assert f"in block {grant.block_number}" in page


def test_sharing_only_some_kinds_of_results_grants_observations_narrowed_to_those_categories(
    alice, alice_record, clinician, deployed
) -> None:
    alice.post("/sharing/", _form(clinician, scope="categories", categories=["vital-signs"], resource_types=[]))

    grant = Grant.objects.get()
    assert grant.resource_types == ["Observation"]
    assert grant.categories == ["http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"]


def test_a_grant_with_nothing_chosen_or_an_end_in_the_past_is_refused_with_the_reason(
    alice, alice_record, clinician, deployed
) -> None:
    nothing = alice.post("/sharing/", _form(clinician, resource_types=[]))
    past = alice.post("/sharing/", _form(clinician, duration="custom", ends="2001-01-01T00:00"))

    assert nothing.status_code == past.status_code == 400
    assert "Choose at least one kind of record." in nothing.content.decode()
    assert "That end is already in the past." in past.content.decode()
    assert not Grant.objects.exists()


def test_only_clinicians_are_in_the_directory(alice, clinician, researcher, other_patient) -> None:
    page = alice.get("/sharing/").content.decode()

    assert f'<option value="{clinician.pk}">dr_carol</option>' in page
    assert f'value="{researcher.pk}"' not in page
    assert alice.post("/sharing/", _form(researcher)).status_code == 400


def test_revoking_asks_first_then_ends_access_at_once(alice, issue_grant) -> None:
    grant = issue_grant()

    confirm = alice.get(f"/sharing/{grant.pk}/revoke/")
    assert "Yes, revoke access" in confirm.content.decode()
    assert Grant.objects.get(pk=grant.pk).status == "recorded"
    response = alice.post(f"/sharing/{grant.pk}/revoke/")

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
