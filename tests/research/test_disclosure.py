"""Disclosure control rules, each with its id in the report."""

from __future__ import annotations

import pytest

from research.disclosure import (
    Report,
    Thresholds,
    counts_disclose,
    differencing_check,
    round_to,
    summary_disclose,
)

T = Thresholds()
PARAMS = {"code": "http://loinc.org|2093-3", "unit": "mg/dL", "lo": 0, "hi": 600, "bin": 1}


def _cells(table):  # type: ignore[no-untyped-def]
    return {"/".join(c["group"].values()): c for c in table["cells"]}


def _rules(report: Report) -> dict[str, str]:
    return {r["id"]: r["outcome"] for r in report.as_dict()["rules"]}


@pytest.mark.parametrize(("true", "shown"), [(9, None), (10, 10), (12, 10), (13, 15)])
def test_counts_under_ten_are_suppressed_and_the_rest_rounded_to_five(true, shown):
    report = Report()
    table = counts_disclose({"female": true, "male": 40, "other": 30}, ["sex"], T, report)

    assert _cells(table)["female"]["count"] == shown


def test_a_count_of_nine_is_flagged_by_the_threshold_rule():
    report = Report()
    table = counts_disclose({"female": 9, "male": 40, "other": 30}, ["sex"], T, report)

    assert _cells(table)["female"]["flag"] == "suppressed-threshold"
    assert _rules(report)["SDC-COUNT-THRESHOLD"] == "applied"


def test_a_suppressed_cell_that_the_total_would_reveal_is_protected_by_a_second_suppression():
    report = Report()
    table = counts_disclose({"female": 5, "male": 30}, ["sex"], T, report)

    cells = _cells(table)
    assert (cells["female"]["flag"], cells["male"]["flag"]) == ("suppressed-threshold", "suppressed-complementary")
    assert cells["male"]["count"] is None
    assert _rules(report)["SDC-COMPLEMENTARY"] == "applied"


def test_complementary_suppression_in_a_two_way_table_leaves_no_row_or_column_with_one_hidden_cell():
    cells = {"female/present": 4, "female/absent": 40, "male/present": 25, "male/absent": 50}
    table = counts_disclose(cells, ["sex", "condition"], T, Report())

    shown = _cells(table)
    hidden = {k for k, c in shown.items() if c["count"] is None}
    assert "female/present" in hidden
    for prefix in ("female/", "male/"):
        row = [k for k in shown if k.startswith(prefix)]
        assert len([k for k in row if k in hidden]) != 1 or table["totals"][f"sex={prefix[:-1]}"] is None
    for suffix in ("/present", "/absent"):
        column = [k for k in shown if k.endswith(suffix)]
        assert len([k for k in column if k in hidden]) != 1 or table["totals"][f"condition={suffix[1:]}"] is None


def test_percentages_need_ten_in_numerator_and_denominator():
    table = counts_disclose({"female": 12, "male": 30}, ["sex"], T, Report())

    cells = _cells(table)
    assert cells["female"]["percent"] == round(100 * 10 / 40, 1)
    assert table["totals"]["total"] == 40


def test_rounding_goes_to_the_nearest_five():
    assert [round_to(n, 5) for n in (10, 12, 13, 17, 18, 20)] == [10, 10, 15, 15, 20, 20]


def _acc(values: list[float]) -> dict:  # type: ignore[type-arg]
    hist = [0] * 600
    for v in values:
        hist[int(v)] += 1
    return {
        "n": len(values),
        "sum": sum(values),
        "sumsq": sum(v * v for v in values),
        "top": sorted(values, reverse=True)[:2],
        "hist": hist,
        "unconverted": 0,
    }


def test_a_mean_dominated_by_one_participant_is_suppressed():
    report = Report()
    values = [1.0] * 11 + [590.0]

    out = summary_disclose(_acc(values), PARAMS, T, report)

    assert (out["mean"], out["sd"], out["quantiles"], out["flag"]) == (None, None, None, "suppressed-dominance")
    assert _rules(report)["SDC-DOMINANCE"] == "applied"


def test_a_mean_of_nine_contributors_is_suppressed_and_of_ten_is_shown():
    few, enough = Report(), Report()

    nine = summary_disclose(_acc([100.0] * 9), PARAMS, T, few)
    ten = summary_disclose(_acc([100.0] * 10), PARAMS, T, enough)

    assert (nine["mean"], nine["flag"]) == (None, "suppressed-min-n")
    assert _rules(few)["SDC-STAT-MIN-N"] == "applied"
    assert (ten["mean"], ten["sd"], ten["n"]) == (100.0, 0.0, 10)


def test_no_minimum_or_maximum_is_ever_reported():
    out = summary_disclose(_acc([float(v) for v in range(100, 130)]), PARAMS, T, Report())

    assert not {"min", "max", "minimum", "maximum"} & set(out)


def test_a_cohort_differing_from_an_earlier_release_by_one_participant_is_blocked():
    earlier = frozenset(range(30))
    report = Report()

    same = differencing_check(earlier | {99}, [("r1", earlier)], T, report)

    assert same is None
    assert report.blocked
    assert _rules(report)["SDC-DIFFERENCING"] == "blocked"


def test_the_same_cohort_returns_the_earlier_release_and_a_distant_one_passes():
    earlier = frozenset(range(30))
    identical, distant = Report(), Report()

    assert differencing_check(earlier, [("r1", earlier)], T, identical) == "r1"
    assert differencing_check(frozenset(range(10, 50)), [("r1", earlier)], T, distant) is None
    assert not distant.blocked
