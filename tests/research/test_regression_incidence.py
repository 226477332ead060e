"""Incidence and regressions in the catalogue: exact from chunked sums, and refused by disclosure control."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression as Reference

from research import catalogue, disclosure
from research.catalogue import Participant
from research.specs import InvalidSpec, spec_validate
from tests.research.conftest import DIABETES, LOINC_CHOL, spec

T = disclosure.Thresholds()
AGE = {"kind": "age"}
FEMALE = {"kind": "female"}
DIABETIC = {"kind": "condition", "code": DIABETES}
CHOL = {"kind": "observation", "code": LOINC_CHOL, "unit": "mg/dL"}


def _obs(value: float, unit: str = "mg/dL") -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]},
        "effectiveDateTime": "2025-01-01",
        "valueQuantity": {"value": value, "code": unit},
    }


def _people(n: int, seed: int = 7) -> list[Participant]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        age = rng.randint(30, 80)
        female = rng.random() < 0.5
        diabetic = rng.random() < 1 / (1 + np.exp(-(-4 + 0.05 * age + 0.4 * female)))
        chol = 150 + 0.8 * age - 12 * female + 15 * diabetic + rng.gauss(0, 20)
        out.append(
            Participant(
                age=age,
                sex="female" if female else "male",
                conditions=frozenset({DIABETES} if diabetic else set()),
                observations=(_obs(round(chol, 1)),),
            )
        )
    return out


def _sums(analysis: Any, params: dict[str, Any], people: list[Participant], chunk: int = 50) -> dict[str, Any]:
    """What the runs do: sums per chunk, then merged; no row ever leaves a chunk."""
    merged = analysis.empty(params)
    for start in range(0, len(people), chunk):
        acc = analysis.empty(params)
        for who in people[start : start + chunk]:
            analysis.contribute(acc, who, params)
        merged = analysis.merge(merged, acc)
    return merged


def _rules(report: disclosure.Report) -> dict[str, str]:
    return {r["id"]: r["outcome"] for r in report.as_dict()["rules"]}


def _linear(people: list[Participant], predictors: list[dict[str, Any]]) -> tuple[dict[str, Any], disclosure.Report]:
    analysis = catalogue.analysis_get("linear-regression")
    params = analysis.params({"outcome": CHOL, "predictors": predictors})
    merged = _sums(analysis, params, people)
    report = disclosure.Report()
    if not disclosure.regression_check(merged, params, T, report):
        return {"coefficients": None, "n": merged["n"]}, report
    fit = analysis.fit(merged)
    return disclosure.regression_table(fit, analysis.terms(params), merged["n"], params, T, report,
                                       kind=analysis.id), report  # fmt: skip


def test_linear_regression_from_chunked_sums_equals_least_squares_on_the_rows():
    people = _people(230)
    table, report = _linear(people, [AGE, FEMALE, DIABETIC])

    x = np.array([[1, p.age, p.sex == "female", DIABETES in p.conditions] for p in people], dtype=float)
    y = np.array([p.observations[0]["valueQuantity"]["value"] for p in people])
    beta, rss, *_ = np.linalg.lstsq(x, y, rcond=None)
    sigma2 = rss[0] / (len(y) - 4)
    se = np.sqrt(np.diag(np.linalg.inv(x.T @ x)) * sigma2)

    assert not report.blocked
    assert table["n"] == 230
    assert [c["term"] for c in table["coefficients"]] == ["(intercept)", "age", "female", f"condition:{DIABETES}"]
    for row, b, s in zip(table["coefficients"], beta, se, strict=True):
        assert row["estimate"] == pytest.approx(b, rel=1e-3)
        assert row["se"] == pytest.approx(s, rel=1e-3)
        assert row["ci95"][0] < row["estimate"] < row["ci95"][1]
    assert set(table) >= {"coefficients", "n"}
    assert not {"residuals", "fitted"} & set(table)
    assert _rules(report)["SDC-REG-NO-RESIDUALS"] == "pass"


def test_a_regression_with_too_few_residual_degrees_of_freedom_is_refused():
    # 15 complete cases, 6 parameters: 9 residual degrees of freedom.
    people = _people(15)
    table, report = _linear(people, [AGE, FEMALE, DIABETIC, {"kind": "condition", "code": "http://snomed.info/sct|1"},
                                     {"kind": "condition", "code": "http://snomed.info/sct|2"}])  # fmt: skip

    assert table["coefficients"] is None
    assert _rules(report)["SDC-REG-DF"] == "blocked"
    assert report.blocked


def test_sixteen_participants_give_ten_degrees_of_freedom_but_six_parameters_need_eighteen():
    five = [AGE, FEMALE, DIABETIC, {"kind": "condition", "code": "a|1"}, {"kind": "condition", "code": "b|2"}]
    # the two extra conditions are absent in everyone: the yes/no rule also applies, so look only at the counts.
    analysis = catalogue.analysis_get("linear-regression")
    params = analysis.params({"outcome": CHOL, "predictors": five})
    report = disclosure.Report()

    disclosure.regression_check(_sums(analysis, params, _people(16)), params, T, report)

    assert (_rules(report)["SDC-REG-DF"], _rules(report)["SDC-REG-PARAMS"]) == ("pass", "blocked")


def test_a_yes_no_predictor_with_a_level_under_ten_is_refused():
    people = _people(120)
    rare = [
        Participant(p.age, p.sex, p.conditions | ({"x|rare"} if i < 9 else set()), p.observations)
        for i, p in enumerate(people)
    ]

    table, report = _linear(rare, [AGE, {"kind": "condition", "code": "x|rare"}])

    assert table["coefficients"] is None
    assert _rules(report)["SDC-REG-BINARY"] == "blocked"


def test_participants_missing_a_variable_are_left_out_not_imputed():
    people = _people(60)
    without = [Participant(p.age, p.sex, p.conditions, ()) for p in people[:20]]
    analysis = catalogue.analysis_get("linear-regression")
    params = analysis.params({"outcome": CHOL, "predictors": [AGE]})

    merged = _sums(analysis, params, without + people[20:])

    assert (merged["n"], merged["missing"]) == (40, 20)


def _logistic(people: list[Participant], predictors: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    analysis = catalogue.analysis_get("logistic-regression")
    params = analysis.params({"outcome": DIABETIC, "predictors": predictors})
    iteration = None
    rounds = 0
    while True:
        rounds += 1
        merged = _sums(analysis, {**params, "beta": (iteration or {}).get("beta")}, people)
        following = analysis.step(merged, iteration)
        if following is None:
            break
        iteration = following
    report = disclosure.Report()
    assert disclosure.regression_check(merged, params, T, report)
    fit = analysis.fit(merged, iteration)
    table = disclosure.regression_table(fit, analysis.terms(params), merged["n"], params, T, report, kind=analysis.id)
    return table, {"rounds": rounds, "report": report}


def test_logistic_regression_over_rounds_equals_the_unpenalised_maximum_likelihood_fit():
    people = _people(400, seed=11)

    table, info = _logistic(people, [AGE, FEMALE])

    x = np.array([[p.age, p.sex == "female"] for p in people], dtype=float)
    y = np.array([DIABETES in p.conditions for p in people], dtype=int)
    reference = Reference(C=np.inf, tol=1e-10, max_iter=1000).fit(x, y)
    expected = [reference.intercept_[0], *reference.coef_[0]]
    assert 3 <= info["rounds"] <= 12
    assert [c["estimate"] for c in table["coefficients"]] == pytest.approx(expected, rel=2e-3)
    assert all(c["se"] > 0 and c["ci95"][0] < c["estimate"] < c["ci95"][1] for c in table["coefficients"])
    assert table["scale"] == "log odds"


def test_a_separated_logistic_model_releases_nothing():
    # Everyone over 55 has the condition, nobody under: the maximum likelihood estimate does not exist.
    people = [
        Participant(age, "female" if age % 2 else "male", frozenset({DIABETES} if age > 55 else set()), ())
        for age in range(30, 90)
    ]

    table, info = _logistic(people, [AGE])

    assert table["coefficients"] is None
    assert _rules(info["report"])["SDC-REG-FIT"] == "blocked"


def _incidence(people: list[Participant]) -> tuple[dict[str, Any], disclosure.Report]:
    analysis = catalogue.analysis_get("incidence")
    params = analysis.params({"condition": DIABETES, "start": "2020-01-01", "end": "2021-12-31"})
    merged = _sums(analysis, params, people)
    report = disclosure.Report()
    return disclosure.incidence_disclose(merged, params, T, report), report


def _person(onset: str | None) -> Participant:
    conditions = frozenset({DIABETES}) if onset is not None else frozenset()
    onsets = ((DIABETES, onset),) if onset is not None else ()
    return Participant(age=50, sex="female", conditions=conditions, observations=(), onsets=onsets)


def test_incidence_counts_new_cases_among_those_at_risk_with_rates_from_rounded_counts():
    people = [_person("2020-06-01")] * 13 + [_person(None)] * 90 + [_person("2015-01-01")] * 7 + [_person("")] * 3

    table, report = _incidence(people)

    # 103 at risk (prevalent and undated left out): 105 shown; 13 cases: 15 shown; 15/105.
    assert (table["at_risk"], table["cases"]) == (105, 15)
    assert table["proportion_percent"] == round(100 * 15 / 105, 1)
    assert table["rate_per_1000_person_years"] == round(1000 * 15 / table["person_years"], 2)
    assert table["person_years"] % 10 == 0
    assert _rules(report)["SDC-RATE"] == "pass"


@pytest.mark.parametrize(("cases", "shown"), [(9, None), (10, 10), (12, 10), (13, 15)])
def test_incidence_suppresses_cases_under_ten_and_then_gives_no_rate(cases, shown):
    table, _report = _incidence([_person("2021-03-01")] * cases + [_person(None)] * 60)

    assert table["cases"] == shown
    assert (table["rate_per_1000_person_years"] is None) == (shown is None)


def test_regression_and_incidence_specs_are_validated_and_name_the_data_they_read():
    clean = spec_validate(
        spec(
            analyses=[
                {"id": "linear-regression", "params": {"outcome": CHOL, "predictors": [AGE, FEMALE]}},
                {"id": "incidence", "params": {"condition": DIABETES, "start": "2020-01-01", "end": "2020-12-31"}},
            ]
        )
    )

    assert clean["data"] == ["Condition", "Observation", "Patient"]
    with pytest.raises(InvalidSpec, match="predictors"):
        spec_validate(spec(analyses=[{"id": "linear-regression", "params": {"outcome": CHOL, "predictors": []}}]))
    with pytest.raises(InvalidSpec, match="outcome"):
        spec_validate(spec(analyses=[{"id": "logistic-regression", "params": {"outcome": CHOL, "predictors": [AGE]}}]))
    backwards = {"condition": DIABETES, "start": "2021-01-01", "end": "2020-01-01"}
    with pytest.raises(InvalidSpec, match="start comes before end"):
        spec_validate(spec(analyses=[{"id": "incidence", "params": backwards}]))


def test_each_new_analysis_has_its_own_code_hash():
    hashes = {a: catalogue.code_hash(a) for a in ("incidence", "linear-regression", "logistic-regression")}

    assert len(set(hashes.values())) == 3
    assert all(h.startswith("sha256:") and len(h) == 71 for h in hashes.values())
    assert catalogue.code_hash("linear-regression") == hashes["linear-regression"]


@pytest.mark.django_db
def test_a_logistic_regression_runs_over_rounds_through_celery_and_every_round_reads_through_the_gate(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    from audit.models import AccessLogEntry
    from research.models import AnalysisRun, RunChunk
    from research.services import analysis_run_request

    predictors = [{"kind": "age"}, {"kind": "observation", "code": LOINC_CHOL, "unit": "mg/dL"}]
    study = recruiting_study(analyses=[
        {"id": "logistic-regression", "params": {"outcome": DIABETIC, "predictors": predictors}},
        {"id": "linear-regression", "params": {"outcome": CHOL, "predictors": [AGE, FEMALE, DIABETIC]}},
    ])  # fmt: skip
    patients = [
        make_patient(
            sex="female" if i % 2 else "male",
            birth=f"{1940 + i}-05-01",
            diabetic=(i * 7) % 3 == 0,
            cholesterol=160.0 + (i * 37) % 90,
        )
        for i in range(33)
    ]
    join(study, patients)

    with django_capture_on_commit_callbacks(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=0)
    run = AnalysisRun.objects.get(pk=run.pk)

    assert run.status == "succeeded", run.status_reason
    rounds = run.iteration["round"] + 1
    assert rounds >= 3
    reads = AccessLogEntry.objects.filter(job_id=str(run.pk), action="records.search", outcome="permit")
    assert reads.count() == 33 * rounds  # each round reads each participant again, under their own grant
    assert all(e.resource_ids[0].startswith("Patient/") for e in reads)  # age: the Patient resource, each time
    assert [c["term"] for c in run.result["coefficients"]] == [
        "(intercept)",
        "age",
        f"observation:{LOINC_CHOL} [mg/dL]",
    ]
    assert run.result["n"] == 35  # 33, rounded to 5
    assert all(c.partial is None for c in RunChunk.objects.filter(run=run))
    assert "beta" in run.iteration
    assert set(run.iteration) == {"round", "beta", "n"}


@pytest.mark.django_db
def test_a_regression_run_with_too_few_degrees_of_freedom_is_blocked_and_shows_no_coefficient(
    recruiting_study, make_patient, join, researcher, django_capture_on_commit_callbacks
):
    from research.models import AnalysisRun
    from research.services import analysis_run_request

    study = recruiting_study(
        analyses=[{"id": "linear-regression", "params": {"outcome": CHOL, "predictors": [AGE, FEMALE]}}]
    )
    # 20 join, only 8 have a cholesterol result: 8 complete cases, 3 parameters, 5 residual degrees of freedom.
    join(study, [make_patient(sex="female" if i % 2 else "male", cholesterol=190.0 + i if i < 8 else None)
                 for i in range(20)])  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        run = analysis_run_request(study=study, by=researcher, analysis_index=0)
    run = AnalysisRun.objects.get(pk=run.pk)

    rules = {r["id"]: r["outcome"] for r in run.report["rules"]}
    assert (run.status, run.result, run.cohort_size) == ("blocked", None, 20)
    assert (rules["SDC-REG-DF"], rules["SDC-REG-PARAMS"]) == ("blocked", "blocked")


def test_a_released_regression_and_incidence_download_as_csv_with_their_flags():
    from research.models import AnalysisRun, Release
    from research.selectors import release_csv

    table, _ = _linear(_people(120), [AGE, FEMALE])
    incidence, _ = _incidence([_person("2020-06-01")] * 13 + [_person(None)] * 90)

    regression_csv = release_csv(Release(run=AnalysisRun(result=table), provenance={"spec_hash": "sha256:x"}))
    incidence_csv = release_csv(Release(run=AnalysisRun(result=incidence), provenance={}))

    lines = regression_csv.splitlines()
    assert lines[0] == "term,estimate,se,ci95_low,ci95_high,p,n,flag"
    assert [line.split(",")[0] for line in lines[1:4]] == ["(intercept)", "age", "female"]
    assert all(line.endswith(",120,ok") for line in lines[1:4])
    assert incidence_csv.splitlines()[1:3] == ["at_risk,105,rounded", "cases,15,rounded"]
