"""`manage.py import_fhir PATH...`: folders, bundles, ndjson; rejected documents listed above one summary line."""

from __future__ import annotations

import json
import shutil

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from records.models import Patient, Resource

pytestmark = pytest.mark.django_db


def _observation(subject: str, value: object) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": value},
    }


def test_the_forty_synthea_bundles_import_with_zero_rejections(synthea_dir, capsys):
    call_command("import_fhir", str(synthea_dir))
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["imported 6787 resources for 40 patients, 0 rejected"]
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
        call_command("import_fhir", str(tmp_path))
    assert exited.value.code == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"rejected {observations}:2: ")
    assert "valueQuantity" in lines[0]
    assert lines[1] == "imported 3 resources for 1 patient, 1 rejected"
    patient = Patient.objects.get()
    assert patient.fhir_id == "p-1"
    assert Resource.objects.filter(patient=patient, resource_type="Observation").count() == 2


def test_a_broken_bundle_is_rejected_whole_and_the_others_still_import(tmp_path, synthea_files, capsys):
    shutil.copy(synthea_files[0], tmp_path / "good.json")
    broken = json.loads(synthea_files[1].read_bytes())
    broken["entry"][5]["resource"]["status"] = "not-a-status"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(SystemExit):
        call_command("import_fhir", str(tmp_path / "good.json"), str(tmp_path / "broken.json"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"rejected {tmp_path / 'broken.json'}: ")
    assert "Bundle.entry[5]" in lines[0]
    good = len(json.loads(synthea_files[0].read_bytes())["entry"])
    assert lines[1] == f"imported {good} resources for 1 patient, 1 rejected"
    assert Patient.objects.count() == 1
    assert Resource.objects.count() == good


def test_a_path_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(CommandError, match="no such file or folder"):
        call_command("import_fhir", str(tmp_path / "missing.json"))
