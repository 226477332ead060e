"""Break-glass on the FHIR API: a person signed in (authorization code), a coded reason and a sentence; no billing."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AccessLogEntry
from consent.gate import access_log_text
from consent.models import BreakGlassEpisode
from records.services import patient_erase
from tests.api.conftest import bearer
from tests.consent.test_break_glass import _claim

pytestmark = pytest.mark.django_db

REASON = "Brought in unconscious to the emergency department, no relatives reachable."


def _glass(code: str = "unconscious-patient", reason: str = REASON) -> dict[str, str]:
    headers = {"HTTP_X_PURPOSE_OF_USE": "ETREAT"}
    if code:
        headers["HTTP_X_BREAK_GLASS_CODE"] = code
    if reason:
        headers["HTTP_X_BREAK_GLASS_REASON"] = reason
    return headers


def _diagnostics(response) -> str:  # type: ignore[no-untyped-def]
    return str(orjson.loads(response.content)["issue"][0]["diagnostics"])


def test_a_signed_in_clinician_breaks_glass_with_a_code_and_a_sentence(
    api, other_clinician, signed_in_token_for, an_observation
):
    token = signed_in_token_for(other_clinician)

    read = api.get(f"/fhir/Observation/{an_observation.fhir_id}", **_glass(), **bearer(token))

    assert read.status_code == 200
    entry = AccessLogEntry.objects.get(action="records.read", outcome="permit")
    reason = access_log_text(patient_id=entry.patient_ref, text=entry.reason)
    assert (entry.break_glass, reason, entry.purpose) == (True, REASON, "ETREAT")
    episode = BreakGlassEpisode.objects.get()
    assert (episode.clinician, episode.code) == (other_clinician, "unconscious-patient")


def test_a_client_credentials_token_cannot_break_glass(api, other_clinician, token_for, an_observation):
    token = token_for(other_clinician)

    read = api.get(f"/fhir/Observation/{an_observation.fhir_id}", **_glass(), **bearer(token))

    assert read.status_code == 403
    assert "authorization-code" in _diagnostics(read)
    assert not AccessLogEntry.objects.filter(action="records.read", outcome="permit").exists()
    assert not BreakGlassEpisode.objects.exists()


def test_a_signed_in_researcher_cannot_break_glass(api, researcher, signed_in_token_for, an_observation):
    token = signed_in_token_for(researcher)

    read = api.get(f"/fhir/Observation/{an_observation.fhir_id}", **_glass(), **bearer(token))

    assert read.status_code == 403
    assert not BreakGlassEpisode.objects.exists()


@pytest.mark.parametrize(
    ("headers", "names"),
    [
        (_glass(reason=""), "X-Break-Glass-Reason"),
        (_glass(reason="aaaaaaaaaa"), "X-Break-Glass-Reason"),
        (_glass(reason="unconscious patient"), "X-Break-Glass-Reason"),
        (_glass(code=""), "X-Break-Glass-Code"),
        (_glass(code="curiosity"), "X-Break-Glass-Code"),
    ],
)
def test_a_missing_code_or_a_reason_that_is_not_a_sentence_is_400(
    api, other_clinician, signed_in_token_for, an_observation, headers, names
):
    token = signed_in_token_for(other_clinician)

    read = api.get(f"/fhir/Observation/{an_observation.fhir_id}", **headers, **bearer(token))

    assert read.status_code == 400
    assert names in _diagnostics(read)
    assert not BreakGlassEpisode.objects.exists()


def test_billing_answers_exactly_like_a_missing_resource(
    api, other_clinician, signed_in_token_for, alice_record, an_observation
):
    claim = _claim(alice_record)
    token = signed_in_token_for(other_clinician)

    denied = api.get(f"/fhir/Claim/{claim.fhir_id}", **_glass(), **bearer(token))
    missing = api.get("/fhir/Claim/no-such-claim", **_glass(), **bearer(token))
    searched = api.get(f"/fhir/Claim?patient={alice_record.fhir_id}", **_glass(), **bearer(token))
    clinical = api.get(f"/fhir/Observation?patient={alice_record.fhir_id}", **_glass(), **bearer(token))

    assert (denied.status_code, denied.content) == (missing.status_code, missing.content)
    assert denied.status_code == 404
    assert searched.status_code == 200
    assert orjson.loads(searched.content)["total"] == 0
    assert clinical.status_code == 200
    assert orjson.loads(clinical.content)["total"] > 0


def test_break_glass_on_an_erased_record_answers_like_an_unknown_one(
    api, other_clinician, signed_in_token_for, alice_record, an_observation
):
    token = signed_in_token_for(other_clinician)
    patient_erase(patient=alice_record, actor="system:test")

    erased = api.get(f"/fhir/Observation/{an_observation.fhir_id}", **_glass(), **bearer(token))
    unknown = api.get("/fhir/Observation/no-such-observation", **_glass(), **bearer(token))
    searched = api.get(f"/fhir/Observation?patient={alice_record.fhir_id}", **_glass(), **bearer(token))

    assert (erased.status_code, erased.content) == (404, unknown.content)
    assert searched.status_code == 200
    assert orjson.loads(searched.content)["total"] == 0
    assert not BreakGlassEpisode.objects.exists()
