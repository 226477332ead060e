"""A study request as one machine-readable spec: validated, canonicalised, hashed.

The hash is what the steward approves, what patients join and what every run and release
names. The patient's study card is generated from the spec (study_card), never written apart.
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

import orjson

from healthledger.errors import HealthLedgerError
from research import catalogue

DUO_CODES = {
    "GRU": "general research use",
    "HMB": "health or medical or biomedical research",
    "DS": "research on a specific disease",
    "NCU": "no commercial use",
    "NPU": "not-for-profit use only",
    "IRB": "ethics approval required",
    "PUB": "results must be published",
    "TS": "time-limited use",
}
REQUIRED_TEXT = ("title", "summary", "institution", "funder", "ethics_ref")
SEXES = ("female", "male", "other", "unknown")


class InvalidSpec(HealthLedgerError):
    """A study spec that cannot be accepted as written (400)."""


def _text(spec: dict[str, Any], key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 2000:
        raise InvalidSpec(f"{key} is required (text, at most 2000 characters)")
    return value.strip()


def _eligibility(raw: object) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidSpec("eligibility is an object")
    out: dict[str, Any] = {}
    conditions = raw.get("conditions", [])
    if not isinstance(conditions, list) or any(not isinstance(c, str) or c.count("|") != 1 for c in conditions):
        raise InvalidSpec('eligibility.conditions are codes written "system|code"')
    if conditions:
        out["conditions"] = sorted(set(conditions))
    band = raw.get("age")
    if band is not None:
        if not (isinstance(band, list) and len(band) == 2 and all(isinstance(x, int) for x in band)):
            raise InvalidSpec("eligibility.age is [min, max] in whole years")
        if not 0 <= band[0] <= band[1] <= 120:
            raise InvalidSpec("eligibility.age must satisfy 0 <= min <= max <= 120")
        out["age"] = band
    sexes = raw.get("sex")
    if sexes is not None:
        if not isinstance(sexes, list) or not sexes or any(s not in SEXES for s in sexes):
            raise InvalidSpec(f"eligibility.sex is a list among {', '.join(SEXES)}")
        out["sex"] = sorted(set(sexes))
    return out


def eligibility_validate(raw: object) -> dict[str, Any]:
    """Eligibility criteria (conditions, age band, sex) in canonical form; feasibility counts take the same shape."""
    return _eligibility(raw)


def spec_validate(raw: object) -> dict[str, Any]:
    """The spec in canonical form, or InvalidSpec naming the first problem."""
    if not isinstance(raw, dict):
        raise InvalidSpec("a study spec is a JSON object")
    spec: dict[str, Any] = {key: _text(raw, key) for key in REQUIRED_TEXT}
    if not isinstance(raw.get("commercial"), bool):
        raise InvalidSpec("commercial is true or false")
    spec["commercial"] = raw["commercial"]
    duo = raw.get("duo")
    if not isinstance(duo, list) or not duo or any(code not in DUO_CODES for code in duo):
        raise InvalidSpec(f"duo lists Data Use Ontology codes among {', '.join(DUO_CODES)}")
    spec["duo"] = sorted(set(duo))
    try:
        ends = date.fromisoformat(str(raw.get("ends")))
    except ValueError:
        raise InvalidSpec("ends is the study's end date, YYYY-MM-DD") from None
    spec["ends"] = ends.isoformat()
    spec["eligibility"] = _eligibility(raw.get("eligibility"))
    analyses = raw.get("analyses")
    if not isinstance(analyses, list) or not analyses:
        raise InvalidSpec("analyses lists at least one analysis from the catalogue")
    try:
        spec["analyses"] = [catalogue.analysis_params_validate(item) for item in analyses]
    except catalogue.InvalidAnalysis as exc:
        raise InvalidSpec(str(exc)) from None
    min_cohort = raw.get("min_cohort", 20)
    if not isinstance(min_cohort, int) or min_cohort < 20:
        raise InvalidSpec("min_cohort is a whole number of at least 20")
    spec["min_cohort"] = min_cohort
    spec["data"] = sorted(
        {t for item in spec["analyses"] for t in catalogue.resource_types(item["id"], item["params"])}
    )
    return spec


def spec_hash(spec: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys): equal specs hash equally."""
    return "sha256:" + hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()


def study_card(spec: dict[str, Any]) -> dict[str, Any]:
    """What the patient reads before joining, in plain words, generated from the approved spec only."""
    uses = [catalogue.plain_words(item) for item in spec["analyses"]]
    return {
        "title": spec["title"],
        "summary": spec["summary"],
        "who": f"{spec['institution']}, funded by {spec['funder']}"
        + (" (a commercial study)" if spec["commercial"] else " (non-commercial)"),
        "ethics": spec["ethics_ref"],
        "data_used": [catalogue.RESOURCE_WORDS.get(t, t) for t in spec["data"]],
        "analyses": uses,
        "use_conditions": [DUO_CODES[c] for c in spec["duo"]],
        "threshold": (
            "Only tables about groups of at least 10 people leave the system, with counts rounded to the"
            f" nearest 5, and no analysis runs on fewer than {spec['min_cohort']} participants."
        ),
        "example_output": "Women aged 40-49: about 35 participants; average cholesterol 5.2 mmol/L (SD 0.9).",
        "ends": spec["ends"],
        "withdrawing": (
            "You can withdraw at any time: from the next read on, your data is no longer used."
            " Results already released cannot be recalled."
        ),
    }
