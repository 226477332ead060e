"""System-level $export for SMART Backend Services: a private_key_jwt client exports what its owner's grants cover."""

from __future__ import annotations

import asyncio
import threading
import time

import cumulus_fhir_support as cfs
import orjson
import pytest
from fhir.resources.R4B.operationdefinition import OperationDefinition
from jwcrypto import jwk
from smart_fetch import bulk_utils, lifecycle

from api import bulk_export
from api.bulk_models import ExportJob
from audit.models import AccessLogEntry
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest
from tests.api.conftest import bearer
from tests.api.test_backend_services import _register

ASYNC = {"HTTP_PREFER": "respond-async", "HTTP_ACCEPT": "application/fhir+json"}


def _signing_jwks() -> tuple[jwk.JWK, dict]:  # type: ignore[type-arg]
    """The client's key pair: the private JWKS the client library signs with, and the key to register."""
    key = jwk.JWK.generate(kty="RSA", size=2048)
    key.update(kid=key.thumbprint())
    private = key.export_private(as_dict=True) | {"alg": "RS384", "key_ops": ["sign"]}
    return key, {"keys": [private]}


@pytest.mark.django_db(transaction=True)
def test_smart_fetch_runs_a_system_export_as_a_backend_service(
    live_server, clinician, other_clinician, issue_grant, alice_record, other_patient, tmp_path, monkeypatch
):
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(11, years=1)), actor="system:test", patient=other_patient)
    issue_grant(resource_types=["Observation"])
    # Bob shares with another clinician: nothing of his is the client's owner's to export.
    issue_grant(patient=other_patient, by=other_patient.user, grantee=other_clinician, resource_types=["Observation"])
    key, private_jwks = _signing_jwks()
    app = _register(clinician, key, scope="system/*.rs system/*.read")
    monkeypatch.setattr(bulk_export.lifecycle, "export_publish", lambda *, job_id: True)
    failures: list[BaseException] = []

    async def export() -> None:
        async with cfs.FhirClient(
            f"{live_server.url}/fhir", ["Observation"], smart_client_id=app.client_id, smart_jwks=private_jwks
        ) as client:
            exporter = bulk_utils.BulkExporter(
                client,
                {"Observation"},
                f"{live_server.url}/fhir",  # the base: GET /fhir/$export
                str(tmp_path),
                metadata=lifecycle.OutputMetadata(str(tmp_path)),
            )
            await exporter.export()

    def run_client() -> None:
        try:
            asyncio.run(export())
        except BaseException as exc:
            failures.append(exc)

    client_thread = threading.Thread(target=run_client)
    client_thread.start()
    deadline = time.monotonic() + 30
    while not ExportJob.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    job = ExportJob.objects.get()
    assert bulk_export.export_step(job_id=job.pk, budget_seconds=60)
    client_thread.join(timeout=60)
    assert not client_thread.is_alive()
    assert failures == []

    assert (job.kind, job.requester_id, job.patient_ids) == ("system", clinician.pk, [str(alice_record.pk)])
    lines = (tmp_path / "Observation.001.ndjson").read_text().splitlines()
    alices = set(
        Resource.objects.filter(patient=alice_record, resource_type="Observation").values_list("fhir_id", flat=True)
    )
    assert {orjson.loads(line)["id"] for line in lines} == alices
    assert (
        not AccessLogEntry.objects.filter(patient_ref=other_patient.pk, action__startswith="records.")
        .exclude(actor="system:test")
        .exists()
    )
    download = AccessLogEntry.objects.get(action="records.export.download")
    assert (download.actor, download.patient_ref) == (f"user:{clinician.pk}", alice_record.pk)


@pytest.mark.django_db
def test_only_a_backend_service_token_may_export_at_the_base(api, clinician, token_for, signed_in_token_for):
    for token in (token_for(clinician), signed_in_token_for(clinician)):  # user/ scopes; a person signed in
        response = api.get("/fhir/$export", **bearer(token), **ASYNC)
        assert response.status_code == 403
        assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"
    assert api.get("/fhir/$export", **ASYNC).status_code == 401
    assert token_for(clinician, scope="system/*.rs")  # with system/ scopes the same kind of client is let in
    response = api.get("/fhir/$export", **bearer(token_for(clinician, scope="system/*.rs")), **ASYNC)
    assert response.status_code == 202
    assert ExportJob.objects.get().kind == "system"


@pytest.mark.django_db
def test_the_capability_statement_declares_export_at_the_base(api):
    statement = orjson.loads(api.get("/fhir/metadata").content)
    operations = statement["rest"][0]["operation"]
    assert [o["name"] for o in operations] == ["export"]
    definition_url = operations[0]["definition"]
    assert definition_url == "http://testserver/fhir/OperationDefinition/export"
    definition = orjson.loads(api.get("/fhir/OperationDefinition/export").content)
    OperationDefinition.model_validate(definition)
    assert (definition["system"], definition["type"], definition["instance"]) == (True, False, False)
    assert definition["base"] == "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
    assert "resource" not in definition
