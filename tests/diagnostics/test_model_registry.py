"""What every model declares, and that model code stays pure computation."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from diagnostics.inference import INSUFFICIENT_DATA, SUCCEEDED, InputSpec, get_model, list_models
from diagnostics.inference.valueset import value_set

REPO = Path(__file__).resolve().parents[2]
TOKEN = re.compile(
    r"^(http://loinc\.org|http://snomed\.info/sct|http://www\.nlm\.nih\.gov/research/umls/rxnorm"
    r"|http://hl7\.org/fhir/sid/icd-10-cm)\|[0-9A-Z.-]+$"
)


def test_the_models_are_listed_in_order():
    assert [spec.id for spec in list_models()] == [
        "ascvd-pce-2013",
        "prevent-base-2024",
        "egfr-ckd-epi-2021",
        "albuminuria-kdigo-2012",
        "kfre-4-variable",
        "news2",
        "diabetes-progression",
    ]


def test_an_unknown_model_id_is_a_key_error():
    with pytest.raises(KeyError):
        get_model("crystal-ball")


@pytest.mark.parametrize("spec", list_models(), ids=lambda spec: spec.id)
def test_every_model_declares_its_use_purpose_inputs_and_version(spec):
    # The KFRE's 1.1.0 refuses patients on dialysis or with a kidney transplant.
    assert spec.version == ("1.1.0" if spec.id == "kfre-4-variable" else "1.0.0")
    assert re.fullmatch(r"[0-9a-f]{64}", spec.version_hash)
    assert "decision support" in spec.intended_use
    assert "not a diagnosis" in spec.intended_use
    assert spec.purpose == "TREAT"
    assert "|" in spec.output_code
    names = [item.name for item in spec.inputs]
    assert len(names) == len(set(names))
    for item in spec.inputs:
        assert isinstance(item, InputSpec)
        assert item.resource_type in {"Patient", "Observation", "Condition", "MedicationRequest", "Procedure"}
        if item.resource_type == "Patient":
            assert item.codes == ()
        elif item.value_set is not None:
            assert item.codes == (), item  # a value set reads the whole type and matches in memory
            assert value_set(item.value_set).source
            assert value_set(item.value_set).date
        else:
            assert item.codes, item
            assert all(TOKEN.match(code) for code in item.codes), item


def test_version_hashes_differ_between_models_and_are_stable_in_a_process():
    hashes = [spec.version_hash for spec in list_models()]
    assert len(set(hashes)) == len(hashes)
    assert hashes == [spec.version_hash for spec in list_models()]


@pytest.mark.parametrize("spec", list_models(), ids=lambda spec: spec.id)
def test_no_input_at_all_gives_insufficient_data_never_an_exception(spec):
    result = get_model(spec.id).run({}, as_of=date(2024, 1, 1))
    assert result.status == INSUFFICIENT_DATA
    assert result.outputs == {}
    assert result.missing
    assert result.summary.startswith(spec.title)
    assert result.as_dict()["status"] == INSUFFICIENT_DATA


def test_garbage_resources_are_ignored_not_crashed_on():
    junk = [{"resourceType": "Observation", "status": "final", "code": "2093-3"}, {"resourceType": "Observation"}, {}]
    for spec in list_models():
        result = get_model(spec.id).run({item.name: junk for item in spec.inputs}, as_of=date(2024, 1, 1))
        assert result.status in {SUCCEEDED, INSUFFICIENT_DATA}


def test_model_code_imports_neither_django_nor_the_training_libraries():
    # Predicting needs only the standard library: workers do not load numpy or scikit-learn to run a model.
    code = (
        "import sys, datetime; import diagnostics.inference as i; "
        "[i.get_model(s.id).run({}, as_of=datetime.date(2024, 1, 1)) for s in i.list_models()]; "
        "print(sorted(m for m in ('django', 'celery', 'numpy', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_model_declares_its_population_and_every_measured_input_its_unit():
    for spec in list_models():
        assert spec.population, spec.id
        for item in spec.inputs:
            if item.limits is not None:
                assert item.unit, (spec.id, item.name)
                assert item.limits_basis, (spec.id, item.name)


def test_the_models_document_is_what_the_declarations_generate():
    from diagnostics.inference.cards import models_document

    committed = (Path(__file__).resolve().parents[2] / "docs" / "diagnostic-models.md").read_text(encoding="utf-8")
    assert committed == models_document(list_models()), "run manage.py diagnostics_models_doc --write"
