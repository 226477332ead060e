"""Incidence of a coded condition over a period: new cases among participants at risk at its start.

A participant is at risk when no onset of the condition is recorded before the period starts; a case
when the first recorded onset falls within the period. A condition recorded without any date
(onset or recorded date) cannot be placed in time: that participant is left out and counted apart,
never released. Person-time runs from the period's start to the onset (cases) or to the period's end
(everyone else): a record does not say when a participant stopped being followed, so the rate
assumes follow-up to the end of the period, as the study card says.
Sufficient statistics only: at-risk and case counts, person-days, and the undated count.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from research.catalogue import InvalidAnalysis, Participant, _code


def _day(raw: object, name: str) -> date:
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise InvalidAnalysis(f"incidence: {name} is a date, YYYY-MM-DD") from None


def onset_of(condition: dict[str, Any]) -> str:
    """A Condition's onset as an ISO date string ('' when the resource carries none)."""
    for value in (
        condition.get("onsetDateTime"),
        (condition.get("onsetPeriod") or {}).get("start"),
        condition.get("recordedDate"),
    ):
        if isinstance(value, str) and len(value) >= 10:
            try:
                return date.fromisoformat(value[:10]).isoformat()
            except ValueError:
                continue
    return ""


class Incidence:
    id = "incidence"
    version = "1.0.0"
    title = "Incidence of a condition over a period"

    def params(self, raw: dict[str, Any]) -> dict[str, Any]:
        code = _code(raw.get("condition"))
        start, end = _day(raw.get("start"), "start"), _day(raw.get("end"), "end")
        if end <= start or (end - start).days > 366 * 50:
            raise InvalidAnalysis("incidence: start comes before end, within 50 years")
        return {"condition": code, "start": start.isoformat(), "end": end.isoformat()}

    def reads(self, params: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
        return [("Condition", (params["condition"],))]

    def person(self, params: dict[str, Any]) -> bool:
        return False

    def data(self, params: dict[str, Any]) -> list[str]:
        return ["Patient", "Condition"]

    def empty(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"at_risk": 0, "cases": 0, "person_days": 0, "undated": 0}

    def contribute(self, acc: dict[str, Any], who: Participant, params: dict[str, Any]) -> None:
        start, end = date.fromisoformat(params["start"]), date.fromisoformat(params["end"])
        onsets = [day for code, day in who.onsets if code == params["condition"]]
        if params["condition"] in who.conditions and not any(onsets):
            acc["undated"] += 1
            return
        first = min((date.fromisoformat(day) for day in onsets if day), default=None)
        if first is not None and first < start:
            return  # a prevalent case: not at risk
        acc["at_risk"] += 1
        if first is not None and first <= end:
            acc["cases"] += 1
            acc["person_days"] += (first - start).days
        else:
            acc["person_days"] += (end - start).days

    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {key: a[key] + b[key] for key in ("at_risk", "cases", "person_days", "undated")}

    def words(self, params: dict[str, Any]) -> str:
        return (
            f"How many participants were first diagnosed with condition {params['condition'].split('|')[1]}"
            f" between {params['start']} and {params['end']}, out of those who did not have it before."
        )
