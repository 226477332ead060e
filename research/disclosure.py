"""Statistical disclosure control, in code, before any person looks at an output.

Pure functions over merged sufficient statistics. Each rule has an id that appears in the
machine-readable report travelling with the output; thresholds come from settings
(RESEARCH_SDC_*), with the defaults below. Counts: cells under the threshold suppressed,
others rounded to the base, margins rounded independently from true counts, complementary
suppression until no published total holds exactly one suppressed cell. Statistics: a
minimum of contributors and the dominance rule; no minimum or maximum is ever computed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from research.regression import BINARY, term

RULES = {
    "SDC-COHORT-MIN": "no run with fewer frozen participants than the minimum cohort",
    "SDC-COUNT-THRESHOLD": "counts under the threshold are suppressed",
    "SDC-ROUND": "every other count is rounded to the nearest base; totals rounded independently",
    "SDC-COMPLEMENTARY": "further cells suppressed so no suppressed cell follows from a published total",
    "SDC-PERCENT": "percentages only where numerator and denominator both reach the threshold",
    "SDC-STAT-MIN-N": "mean, SD and quantiles only with enough contributors",
    "SDC-DOMINANCE": "the two largest contributions at most a share of the total",
    "SDC-NO-EXTREMES": "no minimum or maximum is ever computed",
    "SDC-DIFFERENCING": "a cohort differing from an earlier release of the same analysis by too few is blocked",
    "SDC-IDENTICAL": "the same analysis over the same cohort returns the earlier result",
    "SDC-REG-DF": "regressions only with enough residual degrees of freedom",
    "SDC-REG-PARAMS": "regressions estimate at most one parameter per three contributors",
    "SDC-REG-BINARY": "each level of a yes/no variable in a regression holds at least the count threshold",
    "SDC-REG-NO-RESIDUALS": "no residuals or fitted values are ever released",
    "SDC-REG-FIT": "a model that cannot be estimated (collinear, not converged, separated) releases nothing",
    "SDC-RATE": "incidence rates only where cases and participants at risk both reach the threshold",
}


@dataclass(frozen=True)
class Thresholds:
    min_cohort: int = 20
    count: int = 10
    rounding: int = 5
    percent: int = 10
    stat_n: int = 10
    dominance: float = 0.9
    differencing: int = 10
    reg_df: int = 10


def thresholds() -> Thresholds:
    return Thresholds(
        min_cohort=getattr(settings, "RESEARCH_SDC_MIN_COHORT", 20),
        count=getattr(settings, "RESEARCH_SDC_COUNT_THRESHOLD", 10),
        rounding=getattr(settings, "RESEARCH_SDC_ROUNDING", 5),
        percent=getattr(settings, "RESEARCH_SDC_PERCENT_THRESHOLD", 10),
        stat_n=getattr(settings, "RESEARCH_SDC_STAT_MIN_N", 10),
        dominance=getattr(settings, "RESEARCH_SDC_DOMINANCE", 0.9),
        differencing=getattr(settings, "RESEARCH_SDC_DIFFERENCING", 10),
        reg_df=getattr(settings, "RESEARCH_SDC_REGRESSION_DF", 10),
    )


class Report:
    """The check report: one entry per rule looked at, with what it did."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def note(self, rule: str, outcome: str, *, where: str = "", detail: str = "") -> None:
        entry = self.entries.setdefault(rule, {"id": rule, "rule": RULES[rule], "outcome": "pass", "where": []})
        order = ("pass", "applied", "blocked")
        if order.index(outcome) > order.index(entry["outcome"]):
            entry["outcome"] = outcome
        if where:
            entry["where"].append(where)
        if detail:
            entry["detail"] = detail

    @property
    def blocked(self) -> bool:
        return any(e["outcome"] == "blocked" for e in self.entries.values())

    @property
    def flagged(self) -> bool:
        return any(e["outcome"] != "pass" for e in self.entries.values())

    def as_dict(self) -> dict[str, Any]:
        return {"rules": list(self.entries.values()), "blocked": self.blocked, "flagged": self.flagged}


def round_to(n: int, base: int) -> int:
    """Nearest multiple of base, halves up (12 -> 10, 13 -> 15)."""
    return math.floor(n / base + 0.5) * base


def cohort_check(size: int, report: Report, t: Thresholds, *, minimum: int | None = None) -> bool:
    need = max(t.min_cohort, minimum or 0)
    if size < need:
        report.note("SDC-COHORT-MIN", "blocked", detail=f"fewer than {need} frozen participants")
        return False
    report.note("SDC-COHORT-MIN", "pass")
    return True


@dataclass
class _Cell:
    key: tuple[str, ...]
    true: int
    suppressed: str = ""  # "", "threshold", "complementary"


def _totals(cells: list[_Cell], strata: Sequence[str]) -> list[tuple[str, list[_Cell], int]]:
    """Every total published with the table: each one-stratum margin, then the grand total."""
    out: list[tuple[str, list[_Cell], int]] = []
    for dim, name in enumerate(strata):
        for value in sorted({c.key[dim] for c in cells}):
            members = [c for c in cells if c.key[dim] == value]
            out.append((f"{name}={value}", members, sum(c.true for c in members)))
    out.append(("total", cells, sum(c.true for c in cells)))
    return out


def _complement(cells: list[_Cell], strata: Sequence[str], hidden_totals: set[str], t: Thresholds) -> list[str]:
    """Suppress more cells (or totals) until no published total has exactly one suppressed cell in it."""
    applied: list[str] = []
    changed = True
    while changed:
        changed = False
        totals = _totals(cells, strata)
        for label, members, value in totals:
            if label in hidden_totals:
                continue
            if value < t.count:
                hidden_totals.add(label)
                changed = True
                continue
            hidden = [c for c in members if c.suppressed]
            if len(hidden) != 1:
                continue
            candidates = sorted((c for c in members if not c.suppressed), key=lambda c: (c.true, c.key))
            if candidates:
                candidates[0].suppressed = "complementary"
                applied.append("/".join(candidates[0].key))
            else:
                hidden_totals.add(label)
            changed = True
        # Margins of one stratum sum to the grand total: one hidden margin among them is recoverable too.
        for name in strata:
            labels = [label for label, _, _ in totals if label.startswith(f"{name}=")]
            hidden = [label for label in labels if label in hidden_totals]
            if len(hidden) == 1 and "total" not in hidden_totals:
                shown = sorted(((v, label) for label, _, v in totals if label in labels and label not in hidden_totals))
                if shown:
                    hidden_totals.add(shown[0][1])
                    applied.append(shown[0][1])
                    changed = True
    return applied


def counts_disclose(cells: dict[str, int], strata: Sequence[str], t: Thresholds, report: Report) -> dict[str, Any]:
    """A count table ready to release: suppressed, rounded, complemented, with percentages where allowed."""
    keys = [tuple(k.split("/")) for k in cells]
    values = [sorted({k[dim] for k in keys}) for dim in range(len(strata))]
    grid = [_Cell(key=key, true=0) for key in _product(values)]
    for cell in grid:
        cell.true = cells.get("/".join(cell.key), 0)
        if cell.true < t.count:
            cell.suppressed = "threshold"
            report.note("SDC-COUNT-THRESHOLD", "applied", where="/".join(cell.key))
    report.note("SDC-COUNT-THRESHOLD", "pass")
    hidden_totals: set[str] = set()
    for label in _complement(grid, strata, hidden_totals, t):
        report.note("SDC-COMPLEMENTARY", "applied", where=label)
    report.note("SDC-COMPLEMENTARY", "pass")
    report.note("SDC-ROUND", "applied")
    totals = {
        label: (None if label in hidden_totals else round_to(value, t.rounding))
        for label, _, value in _totals(grid, strata)
    }
    denominator = totals["total"]
    rows = []
    for cell in grid:
        count = None if cell.suppressed else round_to(cell.true, t.rounding)
        percent = None
        if count is not None and denominator is not None:
            if count >= t.percent and denominator >= t.percent:
                percent = round(100 * count / denominator, 1)
            else:
                report.note("SDC-PERCENT", "applied", where="/".join(cell.key))
        rows.append(
            {
                "group": dict(zip(strata, cell.key, strict=True)),
                "count": count,
                "percent": percent,
                "flag": f"suppressed-{cell.suppressed}" if cell.suppressed else "rounded",
            }
        )
    report.note("SDC-PERCENT", "pass")
    return {"kind": "counts", "strata": list(strata), "cells": rows, "totals": totals}


def _product(values: list[list[str]]) -> Iterable[tuple[str, ...]]:
    if not values:
        yield ()
        return
    for head in values[0]:
        for rest in _product(values[1:]):
            yield (head, *rest)


def _quantile(hist: list[int], n: int, q: float, lo: float, width: float) -> float:
    target, seen = q * n, 0
    for index, count in enumerate(hist):
        if count and seen + count >= target:
            return lo + width * (index + (target - seen) / count)
        seen += count
    return lo + width * len(hist)


def summary_disclose(acc: dict[str, Any], params: dict[str, Any], t: Thresholds, report: Report) -> dict[str, Any]:
    """Mean, SD and quartiles, or nothing: enough contributors and no dominant pair. Never min or max."""
    report.note("SDC-NO-EXTREMES", "pass")
    n = int(acc["n"])
    out: dict[str, Any] = {"kind": "summary", "code": params["code"], "unit": params["unit"], "flag": "ok"}
    out["n"] = round_to(n, t.rounding) if n >= t.count else None
    if n < t.stat_n:
        report.note("SDC-STAT-MIN-N", "applied", where="summary", detail=f"fewer than {t.stat_n} contributors")
        return {**out, "mean": None, "sd": None, "quantiles": None, "flag": "suppressed-min-n"}
    report.note("SDC-STAT-MIN-N", "pass")
    total = float(acc["sum"])
    if total <= 0 or sum(acc["top"][:2]) > t.dominance * total:
        report.note("SDC-DOMINANCE", "applied", where="summary", detail="two contributions dominate the total")
        return {**out, "mean": None, "sd": None, "quantiles": None, "flag": "suppressed-dominance"}
    report.note("SDC-DOMINANCE", "pass")
    mean = total / n
    variance = max(0.0, (float(acc["sumsq"]) - n * mean * mean) / (n - 1))
    quantiles = {
        f"p{int(q * 100)}": round(_quantile(acc["hist"], n, q, params["lo"], params["bin"]), 3)
        for q in (0.25, 0.5, 0.75)
    }
    return {**out, "mean": round(mean, 3), "sd": round(math.sqrt(variance), 3), "quantiles": quantiles}


def differencing_check(
    cohort: frozenset[Any], earlier: Sequence[tuple[str, frozenset[Any]]], t: Thresholds, report: Report
) -> str | None:
    """The id of an earlier release over exactly this cohort (to return instead), or None; blocks near misses."""
    for release_id, other in earlier:
        distance = len(cohort ^ other)
        if distance == 0:
            report.note("SDC-IDENTICAL", "applied", detail=f"same cohort as release {release_id}")
            return release_id
        if distance < t.differencing:
            report.note(
                "SDC-DIFFERENCING",
                "blocked",
                detail=f"cohort differs from an earlier release of this analysis by fewer than {t.differencing}",
            )
            return None
    report.note("SDC-DIFFERENCING", "pass")
    return None


def incidence_disclose(acc: dict[str, Any], params: dict[str, Any], t: Thresholds, report: Report) -> dict[str, Any]:
    """At-risk and case counts (thresholded, rounded), person-years, and rates computed from the rounded figures."""
    at_risk, cases = int(acc["at_risk"]), int(acc["cases"])
    out: dict[str, Any] = {"kind": "incidence", **params, "flag": "rounded"}
    shown_risk = round_to(at_risk, t.rounding) if at_risk >= t.count else None
    shown_cases = round_to(cases, t.rounding) if cases >= t.count else None
    for name, true in (("at_risk", at_risk), ("cases", cases)):
        if true < t.count:
            report.note("SDC-COUNT-THRESHOLD", "applied", where=name)
    report.note("SDC-COUNT-THRESHOLD", "pass")
    report.note("SDC-ROUND", "applied")
    # Person-time is published only with its population, rounded to 10 years: never a per-person span.
    years = round_to(round(int(acc["person_days"]) / 365.25), 10) if shown_risk is not None else None
    out.update({"at_risk": shown_risk, "cases": shown_cases, "person_years": years})
    if shown_cases is None or shown_risk is None or shown_cases < t.percent or shown_risk < t.percent or not years:
        report.note("SDC-RATE", "applied", where="incidence")
        out.update({"proportion_percent": None, "rate_per_1000_person_years": None, "flag": "suppressed-threshold"})
        return out
    report.note("SDC-RATE", "pass")
    out["proportion_percent"] = round(100 * shown_cases / shown_risk, 1)
    out["rate_per_1000_person_years"] = round(1000 * shown_cases / years, 2)
    return out


def _sig(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else float(f"{x:.{digits}g}")


def regression_check(acc: dict[str, Any], params: dict[str, Any], t: Thresholds, report: Report) -> bool:
    """The rules a regression must pass before it is fitted at all; False (and blocked) when one fails."""
    report.note("SDC-REG-NO-RESIDUALS", "pass")
    n, p = int(acc["n"]), 1 + len(params["predictors"])
    ok = True
    if n - p < t.reg_df:
        report.note("SDC-REG-DF", "blocked", where="model", detail=f"fewer than {t.reg_df} residual degrees of freedom")
        ok = False
    else:
        report.note("SDC-REG-DF", "pass")
    if p > n / 3:
        report.note(
            "SDC-REG-PARAMS", "blocked", where="model", detail=f"{p} parameters need at least {3 * p} contributors"
        )
        ok = False
    else:
        report.note("SDC-REG-PARAMS", "pass")
    for variable, ones in zip([params["outcome"], *params["predictors"]], acc["ones"], strict=False):
        if variable["kind"] in BINARY and min(ones, n - ones) < t.count:
            report.note("SDC-REG-BINARY", "blocked", where=term(variable),
                        detail=f"a yes/no variable has a level with fewer than {t.count} participants")  # fmt: skip
            ok = False
    if ok:
        report.note("SDC-REG-BINARY", "pass")
    return ok


def regression_table(fit: dict[str, Any], terms: list[str], n: int, params: dict[str, Any], t: Thresholds,
                     report: Report, *, kind: str) -> dict[str, Any]:  # fmt: skip
    """Coefficients, SEs, 95 % CIs (4 significant digits) and n rounded: nothing per participant."""
    if not fit.get("converged", True) or fit.get("separation"):
        report.note("SDC-REG-FIT", "blocked", where="model", detail="the model did not converge or is separated")
        return {"kind": kind, "n": round_to(n, t.rounding), "coefficients": None, "flag": "suppressed-fit"}
    report.note("SDC-REG-FIT", "pass")
    rows = []
    for name, beta, se, pvalue in zip(terms, fit["beta"], fit["se"], fit["p"], strict=True):
        rows.append({
            "term": name,
            "estimate": _sig(beta),
            "se": _sig(se),
            "ci95": [_sig(beta - fit["crit"] * se), _sig(beta + fit["crit"] * se)],
            "p": _sig(pvalue, 3),
        })  # fmt: skip
    scale = "log odds" if kind == "logistic-regression" else "outcome units"
    return {"kind": kind, "n": round_to(n, t.rounding), "scale": scale, "outcome": params["outcome"],
            "coefficients": rows, "flag": "ok"}  # fmt: skip


def scores_disclose(acc: dict[str, Any], params: dict[str, Any], t: Thresholds, report: Report) -> dict[str, Any]:
    """A model's score distribution: the band and refusal tables under the count rules, mean and SD under the
    statistics rules (enough contributors, no dominant pair). Never a minimum, a maximum or one score."""
    report.note("SDC-NO-EXTREMES", "pass")
    bands = counts_disclose(acc["bands"], ["band"], t, report)
    refused = counts_disclose(acc["refused"], ["reason"], t, report)
    # The bands in the model's order (counts_disclose sorts its cells by name).
    order = {label: i for i, label in enumerate(acc["bands"])}
    bands["cells"].sort(key=lambda cell: order[cell["group"]["band"]])
    n = int(acc["n"])
    out: dict[str, Any] = {
        "kind": "score-distribution",
        "model": {k: params.get(k) for k in ("model", "model_version", "model_hash")},
        "as_of": params.get("as_of"),
        "n": round_to(n, t.rounding) if n >= t.count else None,
        "bands": bands,
        "refused": refused,
        "mean": None,
        "sd": None,
        "flag": "ok",
    }
    if n < t.stat_n:
        report.note("SDC-STAT-MIN-N", "applied", where="score", detail=f"fewer than {t.stat_n} contributors")
        return {**out, "flag": "suppressed-min-n"}
    report.note("SDC-STAT-MIN-N", "pass")
    total = float(acc["sum"])
    if total <= 0 or sum(acc["top"][:2]) > t.dominance * total:
        report.note("SDC-DOMINANCE", "applied", where="score", detail="two contributions dominate the total")
        return {**out, "flag": "suppressed-dominance"}
    report.note("SDC-DOMINANCE", "pass")
    mean = total / n
    variance = max(0.0, (float(acc["sumsq"]) - n * mean * mean) / (n - 1))
    return {**out, "mean": round(mean, 3), "sd": round(math.sqrt(variance), 3)}
