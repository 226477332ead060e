"""Who saw my data: every access in words, break-glass highlighted, and the "verified" mark against the chain."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit.anchoring import access_log_anchor
from audit.models import AccessLogEntry
from audit.services import LogEvent, access_log_append, access_log_seal
from consent import gate
from ledger.client import chain_client_reset
from ledger.outbox import outbox_relay

pytestmark = pytest.mark.django_db


def _carol_reads(clinician, patient, observation, *, purpose: str = "TREAT", reason: str = "") -> None:  # type: ignore[no-untyped-def]
    gate.resource_read(
        caller=gate.Caller(
            actor=clinician,
            purpose=purpose,
            reason=reason,
            break_glass_code="unconscious-patient" if reason else "",
            interactive=True,
        ),
        patient=patient,
        resource_type="Observation",
        resource_id=observation.fhir_id,
    )


def _seal_and_anchor() -> None:
    access_log_seal()
    access_log_anchor(force=True)
    outbox_relay()
    outbox_relay()


def test_a_clinicians_read_shows_who_what_why_and_the_grant(alice, issue_grant, clinician, an_observation) -> None:
    grant = issue_grant()
    _carol_reads(clinician, grant.patient, an_observation)

    page = alice.get("/access/").content.decode()

    assert "dr_carol (Clinician)" in page
    assert f'href="/record/Observation/{an_observation.fhir_id}/"' in page
    assert "Treatment" in page
    assert f"#grant-{grant.pk}" in page
    assert "Permitted" in page


def test_an_access_is_marked_verified_once_its_checkpoint_is_anchored_on_chain(
    alice, issue_grant, clinician, an_observation
) -> None:
    grant = issue_grant()
    _carol_reads(clinician, grant.patient, an_observation)
    read = AccessLogEntry.objects.filter(action="records.read").latest("id")
    assert "Not anchored yet" in alice.get("/access/").content.decode()

    _seal_and_anchor()
    page = alice.get("/access/").content.decode()
    proof = alice.get(f"/access/{read.pk}/").content.decode()

    assert f'href="/access/{read.pk}/">✔ Verified' in page
    assert "✔ Verified.</strong> This entry, exactly as shown, is included" in proof
    assert "&quot;verified&quot;: true" in proof


def test_a_chain_that_is_down_makes_entries_not_verifiable_right_now_not_an_error(
    alice, issue_grant, clinician, an_observation, settings
) -> None:
    grant = issue_grant()
    _carol_reads(clinician, grant.patient, an_observation)
    _seal_and_anchor()
    settings.CHAIN_BACKEND = "rpc"
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    chain_client_reset()

    response = alice.get("/access/")

    assert response.status_code == 200
    assert "Not verifiable right now" in response.content.decode()
    read = AccessLogEntry.objects.filter(action="records.read").latest("id")
    assert "the chain is not answering" in alice.get(f"/access/{read.pk}/").content.decode()


def test_a_denied_attempt_is_listed_as_denied(alice, issue_grant, other_clinician, an_observation) -> None:
    issue_grant()
    with pytest.raises(Exception):  # noqa: B017 - the gate's deny looks like ResourceNotFound
        _carol_reads(other_clinician, an_observation.patient, an_observation)

    page = alice.get("/access/").content.decode()

    assert "dr_mallory (Clinician)" in page
    assert '<span class="badge bad">Denied</span>' in page


def test_break_glass_is_highlighted_on_the_log_and_the_dashboard_with_its_reason(
    alice, clinician, an_observation
) -> None:
    _carol_reads(
        clinician, an_observation.patient, an_observation, purpose="ETREAT", reason="unconscious in the ER, allergies"
    )

    log = alice.get("/access/").content.decode()
    board = alice.get("/dashboard/").content.decode()

    assert 'class="break-glass"' in log
    assert "“unconscious in the ER, allergies”" in log
    assert "Emergency (break-glass) accesses" in board
    assert "unconscious in the ER" in board


def test_alices_own_views_are_hidden_unless_asked_for(alice, alice_record) -> None:
    alice.get("/record/export/")

    assert "Downloaded the whole record" not in alice.get("/access/").content.decode()
    assert "Downloaded the whole record" in alice.get("/access/?mine=1").content.decode()


def test_system_and_job_actors_are_named_in_words(alice, patient) -> None:
    with transaction.atomic():
        access_log_append(
            event=LogEvent(actor="job:42", action="records.search", outcome="permit", patient_ref=patient.pk)
        )

    assert "AI model job 42" in alice.get("/access/").content.decode()
