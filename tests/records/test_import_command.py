"""`manage.py import_fhir (--patient ID | --new) PATH...`: an explicit target; bundles, ndjson, rejects listed."""

from __future__ import annotations

import json
import shutil

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.services import user_create
from consent.gate import Caller, record_export
from records.models import Patient, Resource
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db


NO_KEY_LINE = (
    "new records hold no signing key: each patient creates hers in her browser at first sign-in"
    " (Your key); nothing can be shared in her name until then"
)


def _observation(subject: str, value: object) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": value},
    }


def test_the_forty_synthea_bundles_import_with_zero_rejections(synthea_dir, capsys):
    call_command("import_fhir", "--new", str(synthea_dir))
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "imported 6787 resources into 40 records, 0 rejected"
    assert sorted(lines[1:-1]) == sorted(f"record {p.pk}" for p in Patient.objects.all())
    assert lines[-1] == NO_KEY_LINE
    # No record gets a signing key from the server: each patient makes hers in her browser.
    assert not Patient.objects.exclude(wallet_address="").exists()
    assert not Patient.objects.filter(wallet_ciphertext__isnull=False).exists()
    assert "importing" in captured.err  # the progress bar goes to stderr
    assert Patient.objects.count() == 40
    assert Resource.objects.count() == 6787


def test_ndjson_lines_import_one_by_one_and_a_bad_line_is_listed_with_its_reason(tmp_path, capsys):
    patients = tmp_path / "Patient.ndjson"
    patients.write_text(json.dumps({"resourceType": "Patient", "id": "p-1", "gender": "male"}) + "\n")
    observations = tmp_path / "Observation.ndjson"
    observations.write_text(
        "\n".join(
            [
                json.dumps(_observation("Patient/p-1", 61)),
                json.dumps(_observation("Patient/p-1", "sixty")),
                "",
                json.dumps(_observation("Patient/p-1", 64)),
            ]
        )
        + "\n"
    )
    with pytest.raises(SystemExit) as exited:
        call_command("import_fhir", "--new", str(tmp_path))
    assert exited.value.code == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[3] == NO_KEY_LINE
    assert lines[0].startswith(f"rejected {observations}:2: ")
    assert "valueQuantity" in lines[0]
    assert lines[1] == "imported 3 resources into 1 record, 1 rejected"
    patient = Patient.objects.get()
    assert lines[2] == f"record {patient.pk}"
    assert patient.fhir_id == str(patient.pk)
    assert Resource.objects.filter(patient=patient, resource_type="Observation").count() == 2


def test_a_broken_bundle_is_rejected_whole_and_the_others_still_import(tmp_path, synthea_files, capsys):
    shutil.copy(synthea_files[0], tmp_path / "good.json")
    broken = json.loads(synthea_files[1].read_bytes())
    broken["entry"][5]["resource"]["status"] = "not-a-status"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(SystemExit):
        call_command("import_fhir", "--new", str(tmp_path / "good.json"), str(tmp_path / "broken.json"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"rejected {tmp_path / 'broken.json'}: ")
    assert "Bundle.entry[5]" in lines[0]
    good = len(json.loads(synthea_files[0].read_bytes())["entry"])
    assert lines[1] == f"imported {good} resources into 1 record, 1 rejected"
    assert Patient.objects.count() == 1  # the rejected file's new record went with it
    assert Resource.objects.count() == good


def test_a_path_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(CommandError, match="no such file or folder"):
        call_command("import_fhir", "--new", str(tmp_path / "missing.json"))


def test_the_target_must_be_named():
    with pytest.raises(CommandError, match="--patient --new is required"):
        call_command("import_fhir", "whatever.json")


def test_a_squatters_upload_of_someone_elses_patient_id_never_captures_the_operators_import(
    synthea_files, tmp_path, capsys
):
    victim_bundle = json.loads(synthea_files[0].read_bytes())
    patient_entry = victim_bundle["entry"][0]
    squatter_user = user_create(username="squatter", password=None, role="patient")
    from records.services import patient_create

    squatter = patient_create(user=squatter_user)
    claim = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{**patient_entry, "request": {"method": "POST", "url": "Patient"}}],
    }
    fhir_ingest(payload=json.dumps(claim).encode(), actor=f"user:{squatter_user.pk}", patient=squatter)
    victim_user = user_create(username="victim", password=None, role="patient")
    call_command("import_fhir", "--new", "--user", "victim", str(synthea_files[0]))
    victim = Patient.objects.get(user=victim_user)
    assert Resource.objects.filter(patient=victim).count() == len(victim_bundle["entry"])
    assert Resource.objects.filter(patient=squatter).count() == 1
    export = json.loads(record_export(caller=Caller(actor=squatter_user), patient=squatter))
    assert [e["resource"]["resourceType"] for e in export["entry"]] == ["Patient"]


def test_a_record_of_another_account_is_refused_and_nothing_is_written(synthea_files):
    from records.services import patient_create

    alice = user_create(username="alice2", password=None, role="patient")
    user_create(username="mallory", password=None, role="patient")
    record = patient_create(user=alice)
    with pytest.raises(CommandError, match="belongs to an account"):
        call_command("import_fhir", "--patient", str(record.pk), str(synthea_files[0]))
    with pytest.raises(CommandError, match="belongs to an account"):
        call_command("import_fhir", "--patient", str(record.pk), "--user", "mallory", str(synthea_files[0]))
    assert Resource.objects.count() == 0
    call_command("import_fhir", "--patient", str(record.pk), "--user", "alice2", str(synthea_files[0]))
    assert Resource.objects.filter(patient=record).count() == len(json.loads(synthea_files[0].read_bytes())["entry"])


def test_new_with_a_user_refuses_an_account_that_has_a_record(synthea_files):
    from records.services import patient_create

    alice = user_create(username="alice3", password=None, role="patient")
    patient_create(user=alice)
    with pytest.raises(CommandError, match="has a record already"):
        call_command("import_fhir", "--new", "--user", "alice3", str(synthea_files[0]))
    assert Patient.objects.count() == 1
