"""The dashboard opens on health: the newest measurements with their flags, active conditions and medicines."""

from __future__ import annotations

import pytest

from audit.models import AccessLogEntry

pytestmark = pytest.mark.django_db


def test_the_dashboard_shows_the_latest_measurements_with_flags(alice, patient) -> None:
    import orjson

    from tests.portal.test_import_sources import _upload
    from tests.portal.test_numbers import BUNDLE

    _upload(alice, orjson.dumps(BUNDLE), source="Riverside Clinic")

    body = alice.get("/dashboard/").content.decode()

    assert "Your health" in body
    assert "Total cholesterol" in body
    assert '212</a> <span class="unit">mg/dL</span> <span class="flag flag-H"' in body
    assert '83.9</a> <span class="unit">kg</span>' in body
    assert body.index("Your health") < body.index("Shared now")


def test_active_conditions_and_medicines_are_listed_and_the_view_is_three_entries(alice, alice_record) -> None:
    before = AccessLogEntry.objects.count()

    body = alice.get("/dashboard/").content.decode()

    assert "Conditions you have now" in body
    assert '<li><a href="/record/Condition/' in body
    assert "Medicines you take now" in body
    assert '<li><a href="/record/MedicationRequest/' in body
    assert AccessLogEntry.objects.count() - before == 3


def test_an_empty_record_has_no_health_section(alice, patient) -> None:
    body = alice.get("/dashboard/").content.decode()

    assert "Your health" not in body
    assert "Your record is empty" in body


def test_a_clinician_gets_no_patient_dashboard(mallory, alice_record) -> None:
    response = mallory.get("/dashboard/")

    assert b"Conditions you have now" not in response.content


def test_immunizations_the_record_says_are_due_are_listed(alice, patient) -> None:
    import orjson

    from tests.portal.test_import_sources import _upload

    recommendation = {
        "resourceType": "ImmunizationRecommendation",
        "id": "rec-1",
        "patient": {"reference": "Patient/p-1"},
        "date": "2026-01-01",
        "recommendation": [
            {
                "vaccineCode": [{"text": "Influenza vaccine"}],
                "forecastStatus": {"coding": [{"code": "due"}]},
                "dateCriterion": [{"code": {"text": "Due"}, "value": "2026-10-01"}],
            },
            {
                "vaccineCode": [{"text": "Tetanus booster"}],
                "forecastStatus": {"coding": [{"code": "complete"}]},
            },
        ],
    }
    patient_resource = {"resourceType": "Patient", "id": "p-1"}
    entries = [{"fullUrl": "Patient/p-1", "resource": patient_resource}, {"resource": recommendation}]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    imported = _upload(alice, orjson.dumps(bundle))
    assert imported.status_code == 200, imported.content.decode()

    body = alice.get("/dashboard/").content.decode()

    assert "Immunizations due" in body
    assert "Influenza vaccine</a>: due" in body
    assert "Tetanus booster" not in body
