"""The access log in plain words: what was read ("6 lab results"), a burst of reads as one line that opens."""

from __future__ import annotations

import orjson
import pytest

from portal.selectors.access import _date_words, _kind_words, _query_parts
from tests.portal.test_import_sources import _upload
from tests.portal.test_numbers import BUNDLE

pytestmark = pytest.mark.django_db


def test_a_query_reads_as_what_it_asked_for() -> None:
    kind, params = _query_parts(
        "Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
        "&date=ge2020-01-01&date=le2020-12-31"
    )

    assert f"3 {_kind_words(kind, params, 3)}{_date_words(params)}" == "3 lab results from 2020"


def test_a_coded_query_names_the_measurement() -> None:
    kind, params = _query_parts("Observation?code=http://loinc.org|8480-6")

    assert _kind_words(kind, params, 4) == "systolic values"


def test_three_quick_searches_by_the_patient_are_one_line_that_opens(alice, patient) -> None:
    _upload(alice, orjson.dumps(BUNDLE), source="Riverside Clinic")
    for _ in range(3):
        alice.get("/record/timeline/laboratory/", HTTP_HX_REQUEST="true")

    body = alice.get("/access/?mine=1").content.decode()

    assert "<strong>3 times in a few minutes.</strong> Latest: Searched: 6 lab results" in body
    assert "Show all 3" in body
    assert "Technical details" in body
    assert "http://terminology.hl7.org" not in body.split("Technical details")[0].rsplit("<tr", 1)[-1]


def test_the_log_is_only_the_patients_own(bob, alice, patient) -> None:
    _upload(alice, orjson.dumps(BUNDLE), source="Riverside Clinic")
    alice.get("/record/timeline/laboratory/", HTTP_HX_REQUEST="true")

    body = bob.get("/access/?mine=1").content.decode()

    assert "lab results" not in body
