"""Break-glass through the gate: who may, with what reason, on which types, for how long, how often; then a review."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from accounts.models import Notification
from audit.models import AccessLogEntry
from consent.break_glass import break_glass_review
from consent.gate import Caller, access_log_text, resource_read, resource_search
from consent.models import BreakGlassEpisode
from healthledger.errors import HealthLedgerError, ResourceNotFound
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest, patient_erase

pytestmark = pytest.mark.django_db

REASON = "Brought in unconscious to the emergency department, no relatives reachable."
CODE = "unconscious-patient"


def _glass(actor, *, reason: str = REASON, code: str = CODE, interactive: bool = True) -> Caller:  # type: ignore[no-untyped-def]
    return Caller(actor=actor, purpose="ETREAT", reason=reason, break_glass_code=code, interactive=interactive)


def _read(caller: Caller, patient, resource_type: str, resource_id: str) -> bytes:  # type: ignore[no-untyped-def]
    return resource_read(caller=caller, patient=patient, resource_type=resource_type, resource_id=resource_id)


def _claim(patient) -> Resource:  # type: ignore[no-untyped-def]
    """A Claim in the patient's record, as a payer's export carries one next to the clinical data."""
    bundle = generate_patient_bundle(7, years=1)
    subject = bundle["entry"][0]["fullUrl"]
    claim = {
        "resourceType": "Claim",
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}]},
        "use": "claim",
        "patient": {"reference": subject},
        "created": "2024-03-01",
        "provider": {"display": "General Hospital"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Acme Health Plan"}}],
        "total": {"value": 1250.0, "currency": "USD"},
    }
    entry = {"fullUrl": "urn:uuid:0b0e6a4e-6d55-4c5e-9a57-2f3c1e0c9a11", "resource": claim}
    bundle["entry"].append({**entry, "request": {"method": "POST", "url": "Claim"}})
    fhir_ingest(payload=orjson.dumps(bundle), actor="system:test", patient=patient)
    return Resource.objects.get(patient=patient, resource_type="Claim")


@pytest.mark.parametrize(
    "reason",
    [
        "aaaaaaaaaa",  # the ten a's of the review
        "a" * 40,
        "emergency",
        "unconscious patient",  # two words
        "aaaa aaaa aaaa aaaa aaaa",  # a word repeated is not a sentence
        "   ",
    ],
)
def test_a_reason_that_is_not_a_sentence_does_not_break_the_glass(alice_record, clinician, an_observation, reason):
    with pytest.raises(ResourceNotFound):
        _read(_glass(clinician, reason=reason), alice_record, "Observation", an_observation.fhir_id)

    denied = AccessLogEntry.objects.get(purpose="ETREAT")
    assert (denied.outcome, denied.break_glass, denied.reason) == ("deny", False, "")
    assert not BreakGlassEpisode.objects.exists()


@pytest.mark.parametrize("code", ["", "curiosity", "UNCONSCIOUS-PATIENT"])
def test_the_reason_needs_a_code_from_the_list(alice_record, clinician, an_observation, code):
    with pytest.raises(ResourceNotFound):
        _read(_glass(clinician, code=code), alice_record, "Observation", an_observation.fhir_id)

    assert AccessLogEntry.objects.get(purpose="ETREAT").outcome == "deny"


def test_a_backend_service_without_a_person_cannot_break_glass(alice_record, clinician, an_observation):
    with pytest.raises(ResourceNotFound):
        _read(_glass(clinician, interactive=False), alice_record, "Observation", an_observation.fhir_id)

    assert AccessLogEntry.objects.get(purpose="ETREAT").outcome == "deny"
    assert not BreakGlassEpisode.objects.exists()


def test_only_a_clinician_breaks_glass(alice_record, researcher, steward, an_observation):
    for actor in (researcher, steward):
        with pytest.raises(ResourceNotFound):
            _read(_glass(actor), alice_record, "Observation", an_observation.fhir_id)

    assert AccessLogEntry.objects.filter(purpose="ETREAT", outcome="deny").count() == 2


def test_billing_stays_closed_while_the_clinical_record_opens(alice_record, clinician, an_observation):
    claim = _claim(alice_record)

    with pytest.raises(ResourceNotFound):
        _read(_glass(clinician), alice_record, "Claim", claim.fhir_id)
    with pytest.raises(ResourceNotFound):
        resource_search(caller=_glass(clinician), patient=alice_record, resource_type="Claim")
    for billing in ("ExplanationOfBenefit", "Coverage", "Account", "Invoice"):
        with pytest.raises(ResourceNotFound):
            resource_search(caller=_glass(clinician), patient=alice_record, resource_type=billing)
    body = _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)

    assert orjson.loads(body)["id"] == an_observation.fhir_id
    assert AccessLogEntry.objects.filter(purpose="ETREAT", outcome="deny").count() == 6
    permitted = AccessLogEntry.objects.get(purpose="ETREAT", outcome="permit")
    assert (permitted.break_glass, access_log_text(patient_id=permitted.patient_ref, text=permitted.reason)) == (
        True,
        REASON,
    )


def test_the_first_read_opens_an_episode_of_an_hour_that_later_reads_stay_in(alice_record, clinician, an_observation):
    before = timezone.now()
    _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)
    _read(_glass(clinician, reason="Checking the allergy list before giving antibiotics."), alice_record,
          "Observation", an_observation.fhir_id)  # fmt: skip

    episode = BreakGlassEpisode.objects.get()
    reason = access_log_text(patient_id=episode.patient_id, text=episode.reason)
    assert (episode.clinician, episode.patient_id, episode.code, reason) == (
        clinician,
        alice_record.pk,
        CODE,
        REASON,
    )
    assert before <= episode.opened_at <= timezone.now()
    assert episode.expires_at - episode.opened_at == timedelta(hours=1)
    assert episode.reviewed_at is None
    sealed = AccessLogEntry.objects.filter(outcome="permit", break_glass=True).values_list("reason", flat=True)
    reasons = [access_log_text(patient_id=alice_record.pk, text=text) for text in sealed]
    assert reasons == [REASON, "Checking the allergy list before giving antibiotics."]


def test_after_the_window_the_next_read_opens_a_new_episode_and_tells_the_patient_again(
    alice_record, clinician, an_observation
):
    _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)
    past = timezone.now() - timedelta(hours=2)
    BreakGlassEpisode.objects.update(opened_at=past, expires_at=past + timedelta(hours=1))

    _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)

    assert BreakGlassEpisode.objects.count() == 2
    assert BreakGlassEpisode.objects.filter(expires_at__gt=timezone.now()).count() == 1
    assert Notification.objects.filter(user=alice_record.user, kind="consent.break-glass").count() == 2


def test_a_clinician_breaks_glass_on_at_most_the_daily_number_of_patients(
    settings, alice_record, other_patient, clinician, an_observation
):
    settings.BREAK_GLASS_PATIENTS_PER_DAY = 1
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(11, years=1)), actor="system:test", patient=other_patient)
    bobs = Resource.objects.filter(patient=other_patient, resource_type="Observation").order_by("pk").first()
    _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)

    with pytest.raises(ResourceNotFound):
        _read(_glass(clinician), other_patient, "Observation", bobs.fhir_id)
    # The same patient again is not another patient: the limit counts patients, not reads.
    _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)

    assert list(BreakGlassEpisode.objects.values_list("patient_id", flat=True)) == [alice_record.pk]
    assert not Notification.objects.filter(user=other_patient.user).exists()
    assert AccessLogEntry.objects.get(patient_ref=other_patient.pk, purpose="ETREAT").outcome == "deny"


def test_the_daily_limit_counts_the_last_24_hours(settings, alice_record, other_patient, clinician, an_observation):
    settings.BREAK_GLASS_PATIENTS_PER_DAY = 1
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(11, years=1)), actor="system:test", patient=other_patient)
    bobs = Resource.objects.filter(patient=other_patient, resource_type="Observation").order_by("pk").first()
    _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)
    long_ago = timezone.now() - timedelta(hours=25)
    BreakGlassEpisode.objects.update(opened_at=long_ago, expires_at=long_ago + timedelta(hours=1))

    assert _read(_glass(clinician), other_patient, "Observation", bobs.fhir_id)


def test_break_glass_on_an_erased_record_is_not_found_and_tells_nobody(alice_record, clinician, an_observation):
    patient_erase(patient=alice_record, actor="system:test")

    with pytest.raises(HealthLedgerError) as raised:
        _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)

    assert type(raised.value) is ResourceNotFound
    assert not BreakGlassEpisode.objects.exists()
    assert not Notification.objects.exists()


def test_the_patient_is_notified_at_once_without_health_data(alice_record, clinician, an_observation):
    _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)

    notice = Notification.objects.get(user=alice_record.user)
    assert notice.kind == "consent.break-glass"
    assert "dr_carol" in notice.text
    assert "emergency" in notice.text.lower()
    assert REASON not in notice.text
    assert an_observation.fhir_id not in notice.text
    assert notice.link == "/access/"


def test_a_steward_marks_an_episode_reviewed_with_a_note(alice_record, clinician, steward, an_observation):
    _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)
    episode = BreakGlassEpisode.objects.get()

    reviewed = break_glass_review(episode=episode, by=steward, note="Confirmed with the ED rota: Carol was on shift.")

    note = access_log_text(patient_id=reviewed.patient_id, text=reviewed.review_note)
    assert (reviewed.reviewed_by, note) == (steward, "Confirmed with the ED rota: Carol was on shift.")
    assert reviewed.reviewed_at is not None
    review = AccessLogEntry.objects.get(action="consent.break-glass.review")
    assert (review.actor, review.patient_ref, review.outcome) == (f"user:{steward.pk}", alice_record.pk, "permit")


def test_only_a_steward_reviews_and_only_once(alice_record, clinician, steward, an_observation):
    _read(_glass(clinician), alice_record, "Observation", an_observation.fhir_id)
    episode = BreakGlassEpisode.objects.get()

    with pytest.raises(HealthLedgerError):
        break_glass_review(episode=episode, by=clinician, note="I reviewed myself.")
    break_glass_review(episode=episode, by=steward, note="Fine.")
    with pytest.raises(HealthLedgerError):
        break_glass_review(episode=episode, by=steward, note="Again.")

    kept = BreakGlassEpisode.objects.get()
    assert access_log_text(patient_id=kept.patient_id, text=kept.review_note) == "Fine."
