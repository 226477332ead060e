"""Records from every provider: each import names its source, the timeline filters by it, bad parts can be left out."""

from __future__ import annotations

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from records.models import Resource
from tests.portal.test_numbers import BUNDLE

pytestmark = pytest.mark.django_db


def _upload(client, content: bytes, *, source: str = "", skip: bool = False, name: str = "file.json"):  # type: ignore[no-untyped-def]
    data: dict[str, object] = {"file": SimpleUploadedFile(name, content), "source": source}
    if skip:
        data["skip_bad"] = "on"
    return client.post("/record/import/", data, HTTP_HX_REQUEST="true")


def _bad_bundle() -> dict[str, object]:
    bundle = orjson.loads(orjson.dumps(BUNDLE))
    bundle["entry"][3]["resource"]["status"] = "not-a-status"
    return bundle


def test_an_import_says_which_source_it_came_from(alice, patient) -> None:
    response = _upload(alice, orjson.dumps(BUNDLE), source="Riverside Clinic")

    body = response.content.decode()
    assert response.status_code == 200
    assert "from Riverside Clinic: 7 new, 0 updated, 0 already there" in body


def test_the_same_provider_again_updates_and_another_provider_adds(alice, patient) -> None:
    _upload(alice, orjson.dumps(BUNDLE), source="Riverside Clinic")

    again = _upload(alice, orjson.dumps(BUNDLE), source="Riverside Clinic").content.decode()
    other = _upload(alice, orjson.dumps(BUNDLE), source="Hilltop Hospital").content.decode()

    assert "0 new, 0 updated, 7 already there" in again
    assert "from Hilltop Hospital: 7 new" in other
    assert Resource.objects.filter(patient=patient).count() == 14


def test_the_timeline_filters_by_source(alice, patient) -> None:
    _upload(alice, orjson.dumps(BUNDLE), source="Riverside Clinic")
    _upload(alice, orjson.dumps(BUNDLE), source="Hilltop Hospital")

    every = alice.get("/record/timeline/laboratory/", HTTP_HX_REQUEST="true").content.decode()
    one = alice.get("/record/timeline/laboratory/?source=Hilltop+Hospital", HTTP_HX_REQUEST="true").content.decode()

    assert "(12)" in every
    assert '<span class="badge">Riverside Clinic</span>' in every
    assert "(6 from Hilltop Hospital)" in one
    assert '<span class="badge">Riverside Clinic</span>' not in one


def test_the_record_page_offers_the_sources_already_used(alice, patient) -> None:
    _upload(alice, orjson.dumps(BUNDLE), source="Riverside Clinic")

    body = alice.get("/record/").content.decode()

    assert '<option value="Riverside Clinic"></option>' in body


def test_a_partly_bad_file_is_refused_whole_with_an_offer_to_import_the_rest(alice, patient) -> None:
    response = _upload(alice, orjson.dumps(_bad_bundle()), source="Riverside Clinic")

    body = response.content.decode()
    assert response.status_code == 400
    assert "Entry 4 (Observation), field status" in body
    assert "Import the rest, leave these out" in body
    assert Resource.objects.filter(patient=patient).count() == 0


def test_when_the_patient_asks_the_good_part_goes_in_and_the_rest_is_listed(alice, patient) -> None:
    response = _upload(alice, orjson.dumps(_bad_bundle()), source="Riverside Clinic", skip=True)

    body = response.content.decode()
    assert response.status_code == 200
    assert "6 new, 0 updated, 0 already there (6 resources), 1 problem left out" in body
    assert "Entry 4 (Observation), field status" in body
    assert Resource.objects.filter(patient=patient).count() == 6


def test_a_file_that_is_not_json_gets_no_offer_to_skip(alice, patient) -> None:
    response = _upload(alice, b"{not json", skip=True)

    assert response.status_code == 400
    assert "Import the rest" not in response.content.decode()


def test_a_clinician_sees_no_patients_timeline_sources(mallory, patient) -> None:
    response = mallory.get("/record/timeline/laboratory/?source=Riverside+Clinic")

    assert response.status_code in (302, 403, 404)
    assert b"Riverside" not in response.content
