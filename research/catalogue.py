"""The registered analyses: the only computations a study can run. No arbitrary code.

Each analysis is one declaration in REGISTRY: its id, version, parameters, what it reads, how a
participant's resources add to a chunk's sufficient statistics (`contribute`), how two chunks'
statistics merge (`merge`). The code hash covers the analysis's own source, so a release names
exactly the code that made it. Disclosure control (research.disclosure) turns the merged
statistics into a table; nothing here ever returns a per-participant value.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from healthledger.errors import HealthLedgerError

RESOURCE_WORDS = {
    "Patient": "your year of birth and sex",
    "Condition": "your recorded diagnoses (whether you have the conditions the study asks about)",
    "Observation": "your measurements and lab results of the kinds the study names",
    "MedicationRequest": "your prescriptions of the kinds a diagnostic model uses (such as blood pressure medicines)",
}
STRATA = ("age_band", "sex", "condition")
SEXES = ("female", "male", "other", "unknown")
AGE_BANDS = ("0-17", "18-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+")
QUANTILES = (0.25, 0.5, 0.75)
MAX_BINS = 2000
# Unit conversions by (from, to): factor, per LOINC code where the factor depends on the analyte.
CONVERSIONS: dict[tuple[str, str, str], float] = {
    ("2093-3", "mg/dL", "mmol/L"): 1 / 38.67,
    ("2093-3", "mmol/L", "mg/dL"): 38.67,
    ("2085-9", "mg/dL", "mmol/L"): 1 / 38.67,
    ("18262-6", "mg/dL", "mmol/L"): 1 / 38.67,
    ("2571-8", "mg/dL", "mmol/L"): 1 / 88.57,
    ("2339-0", "mg/dL", "mmol/L"): 1 / 18.0,
    ("2345-7", "mg/dL", "mmol/L"): 1 / 18.0,
    ("29463-7", "[lb_av]", "kg"): 0.45359237,
}


class InvalidAnalysis(HealthLedgerError):
    """An analysis not in the catalogue, or parameters it does not accept (400)."""


@dataclass(frozen=True)
class Participant:
    """What a chunk read of one participant, held only in the worker's memory while the chunk runs."""

    age: int | None
    sex: str
    conditions: frozenset[str]
    observations: tuple[dict[str, Any], ...]
    # (condition code, first onset YYYY-MM-DD or "" when undated), for the codes the analysis reads.
    onsets: tuple[tuple[str, str], ...] = ()
    # Whole resources, for an analysis that hands them to a diagnostic model (model-score-distribution).
    resources: tuple[dict[str, Any], ...] = ()


class Analysis(Protocol):
    id: str
    version: str
    title: str

    def params(self, raw: dict[str, Any]) -> dict[str, Any]: ...
    def reads(self, params: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]: ...
    def person(self, params: dict[str, Any]) -> bool: ...
    def empty(self, params: dict[str, Any]) -> dict[str, Any]: ...
    def contribute(self, acc: dict[str, Any], who: Participant, params: dict[str, Any]) -> None: ...
    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]: ...
    def words(self, params: dict[str, Any]) -> str: ...


def age_band(age: int | None) -> str:
    if age is None:
        return "unknown"
    for band in AGE_BANDS[:-1]:
        lo, hi = (int(x) for x in band.split("-"))
        if lo <= age <= hi:
            return band
    return AGE_BANDS[-1]


def age_on(birth: str, day: date) -> int | None:
    try:
        born = date.fromisoformat(birth[:10])
    except (TypeError, ValueError):
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _code(value: object) -> str:
    if not isinstance(value, str) or value.count("|") != 1 or len(value) > 200:
        raise InvalidAnalysis('a code is written "system|code"')
    return value


class CountByStrata:
    id = "count-by-strata"
    version = "1.0.0"
    title = "Counts by strata"

    def params(self, raw: dict[str, Any]) -> dict[str, Any]:
        strata = raw.get("strata")
        if not isinstance(strata, list) or not 1 <= len(strata) <= 3 or any(s not in STRATA for s in strata):
            raise InvalidAnalysis(f"count-by-strata: strata are 1 to 3 of {', '.join(STRATA)}")
        out: dict[str, Any] = {"strata": list(dict.fromkeys(strata))}
        if "condition" in strata:
            out["condition"] = _code(raw.get("condition"))
        return out

    def reads(self, params: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
        return [("Condition", (params["condition"],))] if "condition" in params["strata"] else []

    def person(self, params: dict[str, Any]) -> bool:
        """Whether it needs the Patient resource (age, sex): a read it skips when not."""
        return bool({"age_band", "sex"} & set(params["strata"]))

    def empty(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"cells": {}}

    def contribute(self, acc: dict[str, Any], who: Participant, params: dict[str, Any]) -> None:
        values = {
            "age_band": age_band(who.age),
            "sex": who.sex,
            "condition": "present" if params.get("condition") in who.conditions else "absent",
        }
        key = "/".join(values[s] for s in params["strata"])
        acc["cells"][key] = acc["cells"].get(key, 0) + 1

    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        cells = dict(a["cells"])
        for key, n in b["cells"].items():
            cells[key] = cells.get(key, 0) + n
        return {"cells": cells}

    def words(self, params: dict[str, Any]) -> str:
        by = ", ".join({"age_band": "age band", "sex": "sex", "condition": "whether a condition is recorded"}[s]
                       for s in params["strata"])  # fmt: skip
        return f"How many participants there are in each group by {by}."


class ObservationSummary:
    id = "observation-summary"
    version = "1.0.0"
    title = "Mean, SD and quartiles of an observation"

    def params(self, raw: dict[str, Any]) -> dict[str, Any]:
        code = _code(raw.get("code"))
        unit = raw.get("unit")
        lo, hi, width = raw.get("lo", 0), raw.get("hi"), raw.get("bin")
        if not isinstance(unit, str) or not unit:
            raise InvalidAnalysis("observation-summary: unit is the UCUM unit results are reported in")
        if not all(isinstance(x, int | float) and math.isfinite(x) for x in (lo, hi, width)):
            raise InvalidAnalysis("observation-summary: lo, hi and bin are numbers (the histogram for quartiles)")
        if width <= 0 or hi <= lo or (hi - lo) / width > MAX_BINS:
            raise InvalidAnalysis(f"observation-summary: need lo < hi, bin > 0, at most {MAX_BINS} bins")
        return {"code": code, "unit": unit, "lo": lo, "hi": hi, "bin": width}

    def reads(self, params: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
        return [("Observation", (params["code"],))]

    def person(self, params: dict[str, Any]) -> bool:
        return False

    def empty(self, params: dict[str, Any]) -> dict[str, Any]:
        bins = math.ceil((params["hi"] - params["lo"]) / params["bin"])
        return {"n": 0, "sum": 0.0, "sumsq": 0.0, "top": [], "hist": [0] * bins, "unconverted": 0}

    def _value(self, observations: tuple[dict[str, Any], ...], params: dict[str, Any]) -> float | None:
        # Each participant contributes one value: their latest result of the code.
        dated = sorted(observations, key=lambda o: str(o.get("effectiveDateTime", "")))
        for obs in reversed(dated):
            quantity = obs.get("valueQuantity") or {}
            value, unit = quantity.get("value"), quantity.get("code") or quantity.get("unit")
            if not isinstance(value, int | float):
                continue
            if unit == params["unit"]:
                return float(value)
            factor = CONVERSIONS.get((params["code"].split("|")[1], str(unit), params["unit"]))
            return None if factor is None else float(value) * factor
        return None

    def contribute(self, acc: dict[str, Any], who: Participant, params: dict[str, Any]) -> None:
        if not who.observations:
            return
        value = self._value(who.observations, params)
        if value is None:
            acc["unconverted"] += 1
            return
        acc["n"] += 1
        acc["sum"] += value
        acc["sumsq"] += value * value
        # The two largest contributions, for the dominance rule only; never released.
        acc["top"] = sorted([*acc["top"], abs(value)], reverse=True)[:2]
        index = min(len(acc["hist"]) - 1, max(0, int((value - params["lo"]) // params["bin"])))
        acc["hist"][index] += 1

    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {
            "n": a["n"] + b["n"],
            "sum": a["sum"] + b["sum"],
            "sumsq": a["sumsq"] + b["sumsq"],
            "top": sorted([*a["top"], *b["top"]], reverse=True)[:2],
            "hist": [x + y for x, y in zip(a["hist"], b["hist"], strict=True)],
            "unconverted": a["unconverted"] + b["unconverted"],
        }

    def words(self, params: dict[str, Any]) -> str:
        return (
            f"The average, spread and quartiles of your latest {params['code'].split('|')[1]} result (LOINC),"
            " over all participants together."
        )


def _registry() -> dict[str, Analysis]:
    # Imported here: those modules build on this one's Participant, InvalidAnalysis and codes.
    from research.incidence import Incidence
    from research.regression import LinearRegression, LogisticRegression
    from research.scores import ModelScoreDistribution

    analyses: tuple[Analysis, ...] = (
        CountByStrata(), ObservationSummary(), Incidence(), LinearRegression(), LogisticRegression(),
        ModelScoreDistribution(),
    )  # fmt: skip
    return {a.id: a for a in analyses}


REGISTRY: dict[str, Analysis] = {}


def analysis_get(analysis_id: str) -> Analysis:
    if not REGISTRY:
        REGISTRY.update(_registry())
    try:
        return REGISTRY[analysis_id]
    except KeyError:
        raise InvalidAnalysis(
            f"unknown analysis {analysis_id!r}; the catalogue has {', '.join(sorted(REGISTRY))}"
        ) from None


def code_hash(analysis_id: str) -> str:
    """sha256 of the analysis's own source: what a release names as the code that made it."""
    kind = type(analysis_get(analysis_id))
    # An analysis in its own module (regression, incidence, scores) hashes that whole module: its helpers are its code.
    source = inspect.getsource(kind if kind.__module__ == __name__ else inspect.getmodule(kind))  # type: ignore[arg-type]
    if kind.__module__ != __name__:
        source = f"{kind.__name__}\n{source}"
    return "sha256:" + hashlib.sha256(source.encode("utf-8")).hexdigest()


def analysis_params_validate(item: object) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise InvalidAnalysis('an analysis is {"id": ..., "params": {...}}')
    analysis = analysis_get(item["id"])
    raw = item.get("params", {})
    if not isinstance(raw, dict):
        raise InvalidAnalysis("params is an object")
    return {"id": analysis.id, "params": analysis.params(raw)}


def resource_types(analysis_id: str, params: dict[str, Any] | None = None) -> list[str]:
    """The resource types an analysis reads (what the patient's grant covers)."""
    analysis = analysis_get(analysis_id)
    data = getattr(analysis, "data", None)
    if data is not None and params is not None:
        return list(data(params))
    kinds = {"count-by-strata": ["Patient", "Condition"], "observation-summary": ["Patient", "Observation"]}
    return kinds.get(analysis.id, ["Patient", "Condition", "Observation"])


def plain_words(item: dict[str, Any]) -> str:
    return analysis_get(item["id"]).words(item["params"])
