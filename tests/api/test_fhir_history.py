"""GET {type}/{id}/_history: every version, newest first, each read through the gate and logged."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AccessLogEntry
from records.demo import generate_patient_bundle
from records.services import fhir_ingest
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def _updated_observation(record) -> str:  # type: ignore[no-untyped-def]
    bundle = generate_patient_bundle(7, years=1)
    observation = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and "valueQuantity" in e["resource"]
    )
    observation["valueQuantity"]["value"] = 12345
    result = fhir_ingest(payload=orjson.dumps(bundle), actor="system:test", patient=record)
    [updated] = result.patients[record.pk].updated
    return updated.rsplit("/_history/", 1)[0]


def test_the_patient_reads_every_version_of_her_resource_newest_first(api, patient_user, token_for, alice_record):
    reference = _updated_observation(alice_record)
    token = token_for(patient_user)

    response = api.get(f"/fhir/{reference}/_history", **bearer(token))

    bundle = orjson.loads(response.content)
    assert (response.status_code, bundle["type"], bundle["total"]) == (200, "history", 2)
    versions = [e["resource"]["meta"]["versionId"] for e in bundle["entry"]]
    assert versions == ["2", "1"]
    assert bundle["entry"][0]["resource"]["valueQuantity"]["value"] == 12345
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT", "POST"]
    assert [e["response"]["etag"] for e in bundle["entry"]] == ['W/"2"', 'W/"1"']
    reads = AccessLogEntry.objects.filter(action="records.read", actor=f"user:{patient_user.pk}")
    assert sorted(r for e in reads for r in e.resource_ids) == [f"{reference}/_history/1", f"{reference}/_history/2"]


def test_history_without_access_is_the_same_404_as_a_missing_resource(api, other_clinician, token_for, alice_record):
    reference = _updated_observation(alice_record)
    token = token_for(other_clinician)
    denied = api.get(f"/fhir/{reference}/_history", **bearer(token))
    missing = api.get("/fhir/Observation/no-such-id/_history", **bearer(token))
    assert (denied.status_code, denied.content) == (404, missing.content)
