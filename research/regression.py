"""Linear and logistic regression of a few declared variables, from sufficient statistics only.

A participant adds to sums, never to a row: linear regression keeps X'X, X'y and y'y (exact); logistic
regression is fitted by Newton-Raphson (IRLS) over rounds, each round reading the cohort again and
keeping, per chunk, the gradient X'(y - p), the information X'WX and the log-likelihood at the round's
coefficients (the way DataSHIELD's ds.glm iterates, with the gate deciding each read). Only
coefficients, standard errors, 95 % confidence intervals and a rounded n leave, after disclosure
control (research.disclosure.regression_disclose); residuals and fitted values are never computed
per participant outside the chunk's loop, and never stored.

Variables are declared in the spec, each one of:
  {"kind": "age"}                                   age in whole years at the run
  {"kind": "female"}                                1 for female, 0 for male (other and unknown: missing)
  {"kind": "condition", "code": "system|code"}      1 when the condition is recorded, else 0
  {"kind": "observation", "code": "system|code", "unit": "UCUM"}   the latest result, converted
A participant missing any declared variable is left out (complete cases).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from research.catalogue import CONVERSIONS, InvalidAnalysis, Participant, _code

MAX_PREDICTORS = 5
MAX_ROUNDS = 25
TOLERANCE = 1e-8
# A coefficient this large on the logit scale means (quasi-)separation: an estimate that is not one.
SEPARATION = 15.0
KINDS = ("age", "female", "condition", "observation")
BINARY = ("female", "condition")


def _variable(raw: object, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
        raise InvalidAnalysis(f'{where}: a variable is {{"kind": one of {", ".join(KINDS)}, ...}}')
    kind = raw["kind"]
    if kind in ("age", "female"):
        return {"kind": kind}
    if kind == "condition":
        return {"kind": kind, "code": _code(raw.get("code"))}
    unit = raw.get("unit")
    if not isinstance(unit, str) or not unit or len(unit) > 40:
        raise InvalidAnalysis(f"{where}: an observation variable names its UCUM unit")
    return {"kind": kind, "code": _code(raw.get("code")), "unit": unit}


def term(variable: dict[str, Any]) -> str:
    """The variable's name in the output table."""
    if variable["kind"] in ("age", "female"):
        return str(variable["kind"])
    return f"{variable['kind']}:{variable['code']}" + (f" [{variable['unit']}]" if "unit" in variable else "")


def _coded(observation: dict[str, Any], code: str) -> bool:
    codings = (observation.get("code") or {}).get("coding") or []
    return any(f"{c.get('system')}|{c.get('code')}" == code for c in codings if isinstance(c, dict))


def latest_value(observations: tuple[dict[str, Any], ...], code: str, unit: str) -> float | None:
    """The participant's latest numeric result of `code` in `unit` (converted where the catalogue knows how)."""
    dated = sorted((o for o in observations if _coded(o, code)), key=lambda o: str(o.get("effectiveDateTime", "")))
    for obs in reversed(dated):
        quantity = obs.get("valueQuantity") or {}
        value, given = quantity.get("value"), quantity.get("code") or quantity.get("unit")
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            continue
        if given == unit:
            return float(value)
        factor = CONVERSIONS.get((code.split("|")[1], str(given), unit))
        return None if factor is None else float(value) * factor
    return None


def value(who: Participant, variable: dict[str, Any]) -> float | None:
    kind = variable["kind"]
    if kind == "age":
        return None if who.age is None else float(who.age)
    if kind == "female":
        return {"female": 1.0, "male": 0.0}.get(who.sex)
    if kind == "condition":
        return 1.0 if variable["code"] in who.conditions else 0.0
    return latest_value(who.observations, variable["code"], variable["unit"])


def _square(size: int) -> list[list[float]]:
    return [[0.0] * size for _ in range(size)]


class _Regression:
    id = ""
    version = "1.0.0"
    title = ""
    outcome_kinds: tuple[str, ...] = ()

    def params(self, raw: dict[str, Any]) -> dict[str, Any]:
        outcome = _variable(raw.get("outcome"), f"{self.id}: outcome")
        if outcome["kind"] not in self.outcome_kinds:
            raise InvalidAnalysis(f"{self.id}: the outcome is one of kind {', '.join(self.outcome_kinds)}")
        predictors = raw.get("predictors")
        if not isinstance(predictors, list) or not 1 <= len(predictors) <= MAX_PREDICTORS:
            raise InvalidAnalysis(f"{self.id}: predictors lists 1 to {MAX_PREDICTORS} declared variables")
        clean = [_variable(p, f"{self.id}: predictor") for p in predictors]
        names = [term(v) for v in [outcome, *clean]]
        if len(set(names)) != len(names):
            raise InvalidAnalysis(f"{self.id}: each variable appears once (outcome and predictors)")
        return {"outcome": outcome, "predictors": clean}

    def reads(self, params: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
        variables = [params["outcome"], *params["predictors"]]
        out: list[tuple[str, tuple[str, ...]]] = []
        conditions = tuple(sorted({v["code"] for v in variables if v["kind"] == "condition"}))
        observations = tuple(sorted({v["code"] for v in variables if v["kind"] == "observation"}))
        if conditions:
            out.append(("Condition", conditions))
        if observations:
            out.append(("Observation", observations))
        return out

    def person(self, params: dict[str, Any]) -> bool:
        return any(v["kind"] in ("age", "female") for v in [params["outcome"], *params["predictors"]])

    def data(self, params: dict[str, Any]) -> list[str]:
        kinds = {v["kind"] for v in [params["outcome"], *params["predictors"]]}
        return (
            ["Patient"]
            + (["Condition"] if "condition" in kinds else [])
            + (["Observation"] if "observation" in kinds else [])
        )

    def terms(self, params: dict[str, Any]) -> list[str]:
        return ["(intercept)", *(term(v) for v in params["predictors"])]

    def _row(self, who: Participant, params: dict[str, Any]) -> tuple[list[float], float] | None:
        y = value(who, params["outcome"])
        xs = [value(who, v) for v in params["predictors"]]
        if y is None or any(x is None for x in xs):
            return None
        return [1.0, *(float(x) for x in xs if x is not None)], y

    def _binary_counts(self, acc: dict[str, Any], x: list[float], y: float, params: dict[str, Any]) -> None:
        # Ones of each binary variable (outcome first): each level needs enough participants to be shown.
        flags = [params["outcome"], *params["predictors"]]
        values = [y, *x[1:]]
        for index, (variable, v) in enumerate(zip(flags, values, strict=True)):
            if variable["kind"] in BINARY and v == 1.0:
                acc["ones"][index] += 1

    def words(self, params: dict[str, Any]) -> str:
        names = ", ".join(_plain(v) for v in params["predictors"])
        return f"How {_plain(params['outcome'])} relates to {names}, as one {self.title.lower()} over all participants."


def _plain(variable: dict[str, Any]) -> str:
    kind = variable["kind"]
    if kind == "age":
        return "age"
    if kind == "female":
        return "sex"
    if kind == "condition":
        return f"having condition {variable['code'].split('|')[1]}"
    return f"your latest {variable['code'].split('|')[1]} result"


class LinearRegression(_Regression):
    id = "linear-regression"
    title = "Linear regression"
    outcome_kinds = ("age", "observation")

    def empty(self, params: dict[str, Any]) -> dict[str, Any]:
        p = 1 + len(params["predictors"])
        return {"n": 0, "xtx": _square(p), "xty": [0.0] * p, "yty": 0.0, "ones": [0] * p, "missing": 0}

    def contribute(self, acc: dict[str, Any], who: Participant, params: dict[str, Any]) -> None:
        row = self._row(who, params)
        if row is None:
            acc["missing"] += 1
            return
        x, y = row
        acc["n"] += 1
        for i, xi in enumerate(x):
            acc["xty"][i] += xi * y
            for j, xj in enumerate(x):
                acc["xtx"][i][j] += xi * xj
        acc["yty"] += y * y
        self._binary_counts(acc, x, y, params)

    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return _merge_sums(a, b, ("xtx", "xty", "yty", "ones", "n", "missing"))

    def fit(self, acc: dict[str, Any]) -> dict[str, Any]:
        """Coefficients, their standard errors and 95 % CIs from X'X, X'y, y'y; raises LinAlgError when singular."""
        n = int(acc["n"])
        xtx, xty = np.array(acc["xtx"], dtype=float), np.array(acc["xty"], dtype=float)
        p = len(xty)
        inverse = np.linalg.inv(xtx)
        if not np.all(np.isfinite(inverse)) or np.linalg.cond(xtx) > 1e12:
            raise np.linalg.LinAlgError("singular")
        beta = inverse @ xty
        rss = max(0.0, float(acc["yty"]) - float(beta @ xty))
        df = n - p
        sigma2 = rss / df
        se = np.sqrt(np.maximum(np.diag(inverse) * sigma2, 0.0))
        crit = float(stats.t.ppf(0.975, df))
        pvalues = [float(2 * stats.t.sf(abs(b / s), df)) if s > 0 else None for b, s in zip(beta, se, strict=True)]
        return {"beta": beta.tolist(), "se": se.tolist(), "crit": crit, "p": pvalues, "df": df}


class LogisticRegression(_Regression):
    id = "logistic-regression"
    title = "Logistic regression"
    outcome_kinds = BINARY
    rounds = MAX_ROUNDS

    def empty(self, params: dict[str, Any]) -> dict[str, Any]:
        p = 1 + len(params["predictors"])
        return {"n": 0, "grad": [0.0] * p, "info": _square(p), "loglik": 0.0, "ones": [0] * p, "missing": 0}

    def contribute(self, acc: dict[str, Any], who: Participant, params: dict[str, Any]) -> None:
        row = self._row(who, params)
        if row is None:
            acc["missing"] += 1
            return
        x, y = row
        beta = params.get("beta") or [0.0] * len(x)
        eta = sum(b * xi for b, xi in zip(beta, x, strict=True))
        prob = 1.0 / (1.0 + math.exp(-eta)) if eta >= 0 else math.exp(eta) / (1.0 + math.exp(eta))
        weight = prob * (1.0 - prob)
        acc["n"] += 1
        for i, xi in enumerate(x):
            acc["grad"][i] += xi * (y - prob)
            for j, xj in enumerate(x):
                acc["info"][i][j] += weight * xi * xj
        # log(1 + e^eta) computed stably; the log-likelihood is y*eta - log(1 + e^eta).
        acc["loglik"] += y * eta - (max(eta, 0.0) + math.log1p(math.exp(-abs(eta))))
        self._binary_counts(acc, x, y, params)

    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return _merge_sums(a, b, ("grad", "info", "loglik", "ones", "n", "missing"))

    def step(self, acc: dict[str, Any], iteration: dict[str, Any] | None) -> dict[str, Any] | None:
        """The next round's coefficients (a Newton step), or None once converged (or out of rounds).

        Raises LinAlgError when the information matrix is singular (collinear predictors or an empty cohort).
        """
        state = iteration or {"round": 0, "beta": [0.0] * len(acc["grad"])}
        info = np.array(acc["info"], dtype=float)
        if np.linalg.cond(info) > 1e12:
            raise np.linalg.LinAlgError("singular")
        delta = np.linalg.solve(info, np.array(acc["grad"], dtype=float))
        beta = np.array(state["beta"], dtype=float) + delta
        if float(np.max(np.abs(delta))) < TOLERANCE or state["round"] + 1 >= self.rounds:
            return None
        return {"round": state["round"] + 1, "beta": beta.tolist(), "n": acc["n"]}

    def fit(self, acc: dict[str, Any], iteration: dict[str, Any] | None) -> dict[str, Any]:
        """Coefficients (log odds), SEs from the inverse information and Wald 95 % CIs at convergence."""
        state = iteration or {"round": 0, "beta": [0.0] * len(acc["grad"])}
        info = np.array(acc["info"], dtype=float)
        covariance = np.linalg.inv(info)
        beta = np.array(state["beta"], dtype=float) + covariance @ np.array(acc["grad"], dtype=float)
        se = np.sqrt(np.maximum(np.diag(covariance), 0.0))
        crit = float(stats.norm.ppf(0.975))
        pvalues = [float(2 * stats.norm.sf(abs(b / s))) if s > 0 else None for b, s in zip(beta, se, strict=True)]
        converged = state["round"] + 1 < self.rounds
        return {"beta": beta.tolist(), "se": se.tolist(), "crit": crit, "p": pvalues, "converged": converged,
                "separation": bool(np.max(np.abs(beta)) > SEPARATION)}  # fmt: skip


def _merge_sums(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        x, y = a[key], b[key]
        if isinstance(x, list) and x and isinstance(x[0], list):
            out[key] = [[u + v for u, v in zip(r, s, strict=True)] for r, s in zip(x, y, strict=True)]
        elif isinstance(x, list):
            out[key] = [u + v for u, v in zip(x, y, strict=True)]
        else:
            out[key] = x + y
    return out
