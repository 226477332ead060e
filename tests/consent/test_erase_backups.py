"""Erasure that backups cannot undo: a database copy taken before erasure opens nothing afterwards.

The operator keeps everything it has (the master key, the key files, the database backup);
only the patient's part in the key store is gone. Other patients read from both.
"""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from consent.models import Grant
from consent.services import patient_record_erase
from healthledger.errors import IntegrityFailure, KeyDestroyed
from healthledger.lib.keyfiles import clear_key_caches
from records import decrypt, keys
from records.envelope import version_aad, version_open
from records.keystore import key_store
from records.models import Patient, Resource, ResourceVersion
from records.selectors import stored_version_get
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db


def _backup() -> dict:  # type: ignore[type-arg]
    """What a database backup holds: every patient row's key columns, every resource and version row."""
    return {
        "patients": {
            row["id"]: row
            for row in Patient.objects.values("id", "wrapped_key", "master_key_id", "wallet_ciphertext", "erased_at")
        },
        "resources": list(Resource.objects.all()),
        "versions": list(ResourceVersion.objects.all()),
    }


def _restore(backup: dict) -> None:  # type: ignore[type-arg]
    for pk, row in backup["patients"].items():
        Patient.objects.filter(pk=pk).update(**{k: v for k, v in row.items() if k != "id"})
    kept = set(Resource.objects.values_list("pk", flat=True))
    Resource.objects.bulk_create([r for r in backup["resources"] if r.pk not in kept])
    kept_versions = set(ResourceVersion.objects.values_list("pk", flat=True))
    ResourceVersion.objects.bulk_create([v for v in backup["versions"] if v.pk not in kept_versions])
    clear_key_caches()  # a fresh process, as after a restore


def _read_first(patient: Patient) -> bytes:
    resource = Resource.objects.filter(patient=patient, resource_type="Observation").order_by("pk").first()
    assert resource is not None
    stored = stored_version_get(patient=patient, resource_type="Observation", resource_id=resource.fhir_id)
    assert stored is not None
    return decrypt.stored_version_decrypt(stored)


def test_a_backup_taken_before_erasure_opens_nothing_of_the_erased_patient_and_everything_of_the_others(
    alice_record, other_patient, django_capture_on_commit_callbacks
):
    import orjson

    from records.demo import generate_patient_bundle
    from records.services import fhir_ingest

    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(3, years=1)), actor="t", patient=other_patient)
    before_alice, before_bob = _read_first(alice_record), _read_first(other_patient)
    backup = _backup()
    versions = ResourceVersion.objects.filter(resource__patient=alice_record).count()

    with django_capture_on_commit_callbacks(execute=True):
        patient_record_erase(patient=alice_record, actor="system:test")
    assert not Resource.objects.filter(patient=alice_record).exists()  # not even the shape stays live

    _restore(backup)
    restored = Patient.objects.get(pk=alice_record.pk)
    assert restored.wrapped_key is not None  # the backup's key column is back, with the master key beside it
    opened = 0
    for version in ResourceVersion.objects.filter(resource__patient=alice_record).select_related("resource"):
        stored = stored_version_get(
            patient=restored,
            resource_type=version.resource.resource_type,
            resource_id=version.resource.fhir_id,
            version=version.version,
        )
        assert stored is not None
        with pytest.raises(KeyDestroyed):
            decrypt.stored_version_decrypt(stored)
        # Nor does the database part alone, unwrapped with the master key, open it as a key.
        part = keys.patient_key_part_unwrap(
            patient_id=restored.pk, wrapped=bytes(restored.wrapped_key), master_key_id=restored.master_key_id
        )
        aad = version_aad(
            patient_id=restored.pk, resource_type=stored.resource_type, fhir_id=stored.fhir_id, version=stored.version
        )
        with pytest.raises(IntegrityFailure):
            version_open(
                patient_key=part, aad=aad, ciphertext=stored.ciphertext, wrapped_data_key=stored.wrapped_data_key
            )
        opened += 1
    assert opened == versions > 0
    assert before_alice  # it did read before
    assert _read_first(other_patient) == before_bob


def test_the_erase_command_cannot_revoke_in_her_name_and_shreds_once_she_has_revoked(
    issue_grant, alice_record, patient_user, capsys, django_capture_on_commit_callbacks
):
    grant = issue_grant()
    with pytest.raises(CommandError, match="1 live grant"):
        call_command("erase_patient", str(alice_record.pk), "--no-input")
    assert key_store().part_get(patient_id=alice_record.pk) is not None  # nothing was erased

    grant_revoke_signed(grant=grant, by=patient_user)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("erase_patient", str(alice_record.pk), "--no-input")
    out = capsys.readouterr().out
    assert "0 grants revoked" in out
    revoked = Grant.objects.get(pk=grant.pk)
    assert revoked.status == "revoked"
    assert grant.resource_types == ["Observation"]
    assert revoked.revocation_signature.startswith("0x")  # signed by her, while the key still existed
    patient_user.refresh_from_db()
    assert (patient_user.is_active, patient_user.email, patient_user.first_name) == (False, "", "")
    assert key_store().part_get(patient_id=alice_record.pk) is None
    # What she shared is gone from the grant row; the chain keeps only the commitment it had.
    assert (revoked.resource_types, revoked.categories, revoked.actions, revoked.commitment_salt) == ([], [], [], "")
    assert revoked.scope_commitment.startswith("0x")


def test_erasure_takes_the_words_of_the_access_log_and_the_log_still_verifies(
    alice_record, patient_user, django_capture_on_commit_callbacks
):
    from audit.models import AccessLogEntry
    from audit.services import access_log_seal, access_log_verify
    from consent.gate import Caller, access_log_text, resource_search

    marker = "code=http://loinc.org|2345-7&note=Zyxwvut"
    resource_search(caller=Caller(actor=patient_user), patient=alice_record, resource_type="Observation", query=marker)
    entry = AccessLogEntry.objects.get(action="records.search")
    assert marker not in entry.query  # sealed at rest, in the database and its backups
    assert access_log_text(patient_id=alice_record.pk, text=entry.query) == marker
    access_log_seal()

    with django_capture_on_commit_callbacks(execute=True):
        patient_record_erase(patient=alice_record, actor="system:test")
    clear_key_caches()

    assert access_log_text(patient_id=alice_record.pk, text=entry.query) == "[erased]"
    access_log_seal()
    report = access_log_verify()
    assert report.ok, report.problem
    assert report.entries_checked == AccessLogEntry.objects.count()


def test_erasure_takes_the_clinical_dates_of_the_patients_diagnostic_jobs(alice_record, patient_user):
    from datetime import date

    from diagnostics.models import DiagnosticJob

    job = DiagnosticJob.objects.create(
        requester=patient_user,
        patient=alice_record,
        model_id="egfr-ckd-epi-2021",
        model_version="1",
        model_version_hash="h",
        purpose="PATRQT",
        as_of=date(2019, 3, 4),
        as_of_from_inputs=True,
        status="insufficient-data",
        status_reason="stale: creatinine",
        reasons=[{"input": "creatinine", "kind": "stale"}],
        reason_detail="sealed:x",
    )
    patient_record_erase(patient=alice_record, actor="system:test")
    job.refresh_from_db()
    assert job.as_of == job.created_at.date()
    assert job.as_of_from_inputs is False
    # The reasons are value-free and stay; their sealed words go with the key (tests/diagnostics/test_job_reasons.py).
    assert job.reasons == [{"input": "creatinine", "kind": "stale"}]
