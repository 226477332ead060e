"""Alice's own pages render her own record through the gate, and each read lands in her access log."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AccessLogEntry
from records.models import Resource

pytestmark = pytest.mark.django_db


def test_the_dashboard_of_a_new_patient_says_the_record_is_empty(alice) -> None:
    response = alice.get("/dashboard/")

    assert response.status_code == 200
    assert "Your record is empty" in response.content.decode()


def test_the_record_page_counts_the_resources_of_each_type(alice, alice_record) -> None:
    observations = Resource.objects.filter(patient=alice_record, resource_type="Observation").count()

    response = alice.get("/record/")

    assert response.status_code == 200
    assert f"{observations} Observation" in response.content.decode()


def test_a_resource_reads_in_plain_words_and_as_fhir_json(alice, an_observation) -> None:
    response = alice.get(f"/record/Observation/{an_observation.fhir_id}/")

    body = response.content.decode()
    assert response.status_code == 200
    assert "Measurement or test result" in body
    assert f"&quot;id&quot;: &quot;{an_observation.fhir_id}&quot;" in body
    entry = AccessLogEntry.objects.filter(action="records.read").latest("id")
    assert (entry.actor, entry.purpose, entry.outcome) == (f"user:{an_observation.patient.user_id}", "PATRQT", "permit")


def test_the_blood_pressure_chart_feeds_systolic_and_diastolic_points_with_their_ranges(alice, alice_record) -> None:
    response = alice.get("/record/charts/blood-pressure.json")

    data = response.json()
    systolic, diastolic = data["series"]
    assert (systolic["key"], systolic["low"], systolic["high"]) == ("systolic", 90, 120)
    assert (diastolic["key"], diastolic["low"], diastolic["high"]) == ("diastolic", 60, 80)
    assert len(systolic["points"]) == len(diastolic["points"]) > 0
    assert all(p["ref"].startswith("Observation/") for p in systolic["points"])
    assert [p["x"] for p in systolic["points"]] == sorted(p["x"] for p in systolic["points"])


def test_the_egfr_chart_adds_values_computed_from_creatinine(alice, alice_record) -> None:
    data = alice.get("/record/charts/egfr.json").json()
    creatinine = alice.get("/record/charts/creatinine.json").json()

    computed = next(s for s in data["series"] if s["key"] == "egfr-computed")
    assert len(computed["points"]) == len(creatinine["series"][0]["points"]) > 0
    assert all(0 < p["y"] < 200 for p in computed["points"])


def test_an_unknown_chart_is_not_found(alice) -> None:
    assert alice.get("/record/charts/astrology.json").status_code == 404


def test_the_timeline_lists_conditions_newest_first(alice, alice_record) -> None:
    response = alice.get("/record/timeline/conditions/", HTTP_HX_REQUEST="true")

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body
    count = Resource.objects.filter(patient=alice_record, resource_type="Condition").count()
    assert f'Conditions <span class="muted">({count})</span>' in body


def test_download_gives_the_whole_record_as_a_fhir_bundle(alice, alice_record) -> None:
    response = alice.get("/record/export/")

    bundle = orjson.loads(response.content)
    assert response["Content-Type"] == "application/fhir+json"
    assert response["Content-Disposition"].startswith('attachment; filename="healthledger-record-')
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "collection")
    assert len(bundle["entry"]) == Resource.objects.filter(patient=alice_record).count()
