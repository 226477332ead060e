"""Distributions of a diagnostic model's scores: the model runs in the worker on inputs read through the gate.

Known creatinine results give known KDIGO bands; a band under the threshold is suppressed; a participant
the model refuses is counted by a value-free reason; a participant who withdrew is not read; no score
of anyone appears in the result, in the chunks or in a task's arguments; no DiagnosticJob is created.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from accounts.services import user_create
from audit.models import AccessLogEntry
from diagnostics import inference
from diagnostics.models import DiagnosticJob
from records.models import Patient
from records.services import fhir_ingest, patient_create
from research import catalogue, disclosure
from research.models import AnalysisRun, RunChunk
from research.scores import SCORES, ModelScoreDistribution, band_of
from research.services import analysis_run_request
from research.specs import InvalidSpec, spec_validate, study_card
from tests.patient_device import participation_withdraw_signed
from tests.research.conftest import PATIENT_URN, _entry, spec

pytestmark = pytest.mark.django_db

EGFR = "egfr-ckd-epi-2021"
AS_OF = "2025-07-01"
ANALYSIS = {"id": "model-score-distribution", "params": {"model": EGFR, "as_of": AS_OF}}


def _bundle(creatinine: float | None) -> dict[str, Any]:
    entries = [_entry(1, {"resourceType": "Patient", "gender": "female", "birthDate": "1970-01-01"})]
    if creatinine is not None:
        entries.append(_entry(2, {
            "resourceType": "Observation",
            "status": "final",
            "subject": {"reference": PATIENT_URN},
            "effectiveDateTime": "2025-06-01T10:00:00Z",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
            "valueQuantity": {"value": creatinine, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                              "code": "mg/dL"},
        }))  # fmt: skip
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture
def make_scored(db):  # type: ignore[no-untyped-def]
    counter = iter(range(10_000))

    def make(creatinine: float | None) -> Patient:
        user = user_create(username=f"scored-{next(counter):05d}-x", password=None, role="patient")
        patient = patient_create(user=user)
        fhir_ingest(payload=orjson.dumps(_bundle(creatinine)), actor="system:test", patient=patient)
        patient.refresh_from_db()
        return patient

    return make


def _egfr(creatinine: float) -> float:
    """What the registered model itself reports for one of these participants."""
    model = inference.get_model(EGFR)
    resources = [entry["resource"] for entry in _bundle(creatinine)["entry"]]
    from datetime import date

    result = model.run(inference.inputs_from_resources(model.spec, resources), as_of=date.fromisoformat(AS_OF))
    assert result.succeeded
    return float(result.outputs["egfr_ml_min_1_73m2"])


def _numbers(node: Any) -> list[float]:
    """Every number in a JSON document (booleans aside)."""
    if isinstance(node, dict):
        return [x for value in node.values() for x in _numbers(value)]
    if isinstance(node, list):
        return [x for value in node for x in _numbers(value)]
    return [float(node)] if isinstance(node, int | float) and not isinstance(node, bool) else []


def _run(study, researcher, capture) -> AnalysisRun:  # type: ignore[no-untyped-def]
    with capture(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=0)
    return AnalysisRun.objects.get(pk=run.pk)


def test_a_cohort_run_gives_known_bands_suppresses_small_cells_and_counts_refusals_by_reason(
    recruiting_study, make_scored, join, researcher, django_capture_on_commit_callbacks, monkeypatch
):
    from research import tasks

    healthy, low, unscored = 0.7, 3.0, None
    g1, g4 = _egfr(healthy), _egfr(low)
    score = SCORES[EGFR]
    assert (band_of(score, g1), band_of(score, g4)) == ("G1 (90 or more)", "G4 (15-29)")
    study = recruiting_study(analyses=[ANALYSIS])
    assert study.spec["data"] == ["Observation", "Patient"]
    patients = [make_scored(healthy) for _ in range(12)] + [make_scored(low) for _ in range(3)]
    patients += [make_scored(unscored) for _ in range(11)]
    leaver_patient = make_scored(low)
    joined = join(study, [*patients, leaver_patient])
    participation_withdraw_signed(participation=joined[-1], by=leaver_patient.user)
    chunk_args: list[Any] = []
    real = tasks.analysis_chunk_run.apply_async

    def spy(args, **kwargs):  # type: ignore[no-untyped-def]
        chunk_args.append(list(args))
        return real(args, **kwargs)

    monkeypatch.setattr(tasks.analysis_chunk_run, "apply_async", spy)
    jobs_before = DiagnosticJob.objects.count()

    run = _run(study, researcher, django_capture_on_commit_callbacks)

    assert (run.status, run.cohort_size) == ("succeeded", 26), run.status_reason
    result = run.result
    bands = {c["group"]["band"]: c for c in result["bands"]["cells"]}
    assert list(bands) == list(score.labels)  # the model's bands, in order
    assert (bands["G1 (90 or more)"]["count"], bands["G1 (90 or more)"]["flag"]) == (10, "rounded")
    assert (bands["G4 (15-29)"]["count"], bands["G4 (15-29)"]["flag"]) == (None, "suppressed-threshold")
    assert result["bands"]["totals"]["total"] == 15
    # Eleven participants without a creatinine: one value-free reason code, the count rounded.
    assert result["refused"]["cells"] == [
        {"group": {"reason": "creatinine:missing"}, "count": 10, "percent": 100.0, "flag": "rounded"}
    ]
    assert result["n"] == 15
    assert result["mean"] == pytest.approx(round((12 * g1 + 3 * g4) / 15, 3))
    assert result["sd"] is not None
    assert result["as_of"] == AS_OF
    assert result["model"]["model"] == EGFR
    assert result["model"]["model_hash"] == inference.get_model(EGFR).spec.version_hash
    assert not {"min", "max", "minimum", "maximum"} & set(result)
    rules = {r["id"]: r["outcome"] for r in run.report["rules"]}
    assert rules["SDC-COUNT-THRESHOLD"] == "applied"
    assert (rules["SDC-NO-EXTREMES"], rules["SDC-STAT-MIN-N"], rules["SDC-DOMINANCE"]) == ("pass",) * 3
    # Nobody's own score anywhere: not in the result, not in the chunks, not in a task's arguments.
    assert not {g1, g4} & set(_numbers(result))
    assert not {g1, g4} & set(_numbers(run.report))
    assert all(chunk.partial is None for chunk in RunChunk.objects.filter(run=run))
    assert chunk_args == [[str(run.pk), 0]]
    # Read through the gate under each participant's grant, as the run; the withdrawn one not at all.
    reads = AccessLogEntry.objects.filter(job_id=str(run.pk), action__in=["records.read", "records.search"])
    assert {e.patient_ref for e in reads.filter(outcome="permit")} == {p.pk for p in patients}
    assert not reads.filter(patient_ref=leaver_patient.pk).exists()
    # The model ran in the worker: no diagnostic job, nothing written into anyone's record.
    assert DiagnosticJob.objects.count() == jobs_before


def test_a_mean_dominated_by_two_scores_is_suppressed_and_small_counts_hide_the_mean():
    analysis = ModelScoreDistribution()
    params = {"model": "news2", "as_of": AS_OF}
    t = disclosure.Thresholds()
    acc = analysis.empty(params)
    acc.update(n=12, sum=40.0, sumsq=400.0, top=[19.0, 18.0])
    acc["bands"]["0"], acc["bands"]["7 or more (high)"] = 10, 2
    report = disclosure.Report()
    table = disclosure.scores_disclose(acc, params, t, report)
    assert (table["mean"], table["sd"], table["flag"]) == (None, None, "suppressed-dominance")
    acc.update(n=9, sum=50.0, top=[6.0, 6.0])
    table = disclosure.scores_disclose(acc, params, t, disclosure.Report())
    assert (table["mean"], table["n"], table["flag"]) == (None, None, "suppressed-min-n")


def test_only_registered_models_with_a_numeric_score_are_accepted_and_the_card_describes_it():
    analysis = catalogue.analysis_get("model-score-distribution")
    for bad in ({"model": "albuminuria-kdigo-2012"}, {"model": "no-such-model"}, {},
                {"model": EGFR, "as_of": "yesterday"}):  # fmt: skip
        with pytest.raises(catalogue.InvalidAnalysis):
            analysis.params(bad)
    with pytest.raises(InvalidSpec):
        spec_validate(
            spec(analyses=[{"id": "model-score-distribution", "params": {"model": "albuminuria-kdigo-2012"}}])
        )
    checked = spec_validate(spec(analyses=[{"id": "model-score-distribution", "params": {"model": "ascvd-pce-2013"}}]))
    assert checked["data"] == ["Condition", "MedicationRequest", "Observation", "Patient"]
    card = study_card(checked)
    assert "ASCVD" in card["analyses"][0] or "ascvd" in card["analyses"][0].lower()
    assert "never leaves" in card["analyses"][0]
    assert any("prescriptions" in words for words in card["data_used"])
    assert catalogue.code_hash("model-score-distribution").startswith("sha256:")


def test_a_released_score_distribution_is_a_csv_of_bands_refusals_and_statistics():
    from types import SimpleNamespace

    from research.selectors import release_csv

    acc = ModelScoreDistribution().empty({"model": EGFR})
    acc.update(n=15, sum=1400.0, sumsq=140000.0, top=[110.0, 105.0], refused={"creatinine:missing": 11})
    acc["bands"]["G1 (90 or more)"], acc["bands"]["G4 (15-29)"] = 12, 3
    table = disclosure.scores_disclose(acc, {"model": EGFR, "as_of": AS_OF}, disclosure.Thresholds(),
                                       disclosure.Report())  # fmt: skip
    release = SimpleNamespace(run=SimpleNamespace(result=table), provenance={"analysis": "model-score-distribution"})
    rows = release_csv(release).splitlines()  # type: ignore[arg-type]
    assert "bands,G1 (90 or more),10,66.7,rounded" in rows
    assert "bands,G4 (15-29),,,suppressed-threshold" in rows
    assert "refused,creatinine:missing,10,100.0,rounded" in rows
    assert "statistic,mean,93.333,,ok" in rows
