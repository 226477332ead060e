"""A patient's own page views: the record page and all its charts are a few entries in her log, not one per chart."""

from __future__ import annotations

import pytest

from audit.models import AccessLogEntry
from portal.metrics import METRICS

pytestmark = pytest.mark.django_db


def test_the_record_page_with_every_chart_writes_three_entries(alice, alice_record) -> None:
    before = AccessLogEntry.objects.count()

    page = alice.get("/record/")
    charts = alice.get("/record/charts/all.json")

    assert page.status_code == charts.status_code == 200
    # The sources (Patient resources), every chart's observations in one search, and the Patient for eGFR.
    assert AccessLogEntry.objects.count() - before == 3
    assert [c["slug"] for c in charts.json()["charts"]] == [m.slug for m in METRICS]


def test_all_charts_agree_with_each_chart_alone(alice, alice_record) -> None:
    every = {c["slug"]: c for c in alice.get("/record/charts/all.json").json()["charts"]}

    for metric in METRICS:
        assert alice.get(f"/record/charts/{metric.slug}.json").json() == every[metric.slug]


def test_a_clinician_without_a_grant_gets_no_charts(mallory, alice_record) -> None:
    response = mallory.get("/record/charts/all.json")

    assert response.status_code in (302, 403, 404)
    assert b"series" not in response.content


def test_alices_charts_and_dashboard_hold_none_of_bobs_record(alice, alice_record, bob_record) -> None:
    from records.models import Resource

    bobs = set(Resource.objects.filter(patient=bob_record).values_list("fhir_id", flat=True))

    charts = alice.get("/record/charts/all.json").json()["charts"]
    dashboard = alice.get("/dashboard/").content.decode()

    refs = {p["ref"].split("/")[1] for c in charts for s in c["series"] for p in s["points"]}
    assert refs
    assert not refs & bobs
    assert not any(fhir_id in dashboard for fhir_id in bobs)
