"""Who a demo patient is and how their numbers move: the profile drawn once from the seed, the visit times,
the diagnoses along the way, and the trends values follow towards a diagnosis and after treatment."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from records.demo.codes import FAMILY, GIVEN_FEMALE, GIVEN_MALE


@dataclass
class _Profile:
    """Who the patient is and how their numbers move; drawn once from the seed."""

    sex: str
    given: str
    family: str
    birth_date: date
    height_cm: float
    bmi: float
    smoking: str
    conditions: dict[str, int] = field(default_factory=dict)  # condition -> visit index of diagnosis
    hdl: float = 50.0
    triglycerides: float = 130.0
    creatinine: float = 0.9


def _visit_times(rng: random.Random, *, years: int, end: date) -> list[datetime]:
    """Twice-yearly check-ups ending at `end`, on weekdays in office hours."""
    count = years * 2
    times = []
    for back in range(count - 1, -1, -1):
        day = end - timedelta(days=182 * back + rng.randint(0, 20))
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        minute = rng.randrange(8 * 60, 16 * 60 + 30, 15)
        times.append(datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=UTC))
    return times


def _profile(rng: random.Random, *, visit_count: int, end: date) -> _Profile:
    sex = rng.choice(("female", "male"))
    age = rng.randint(42, 74)
    profile = _Profile(
        sex=sex,
        given=rng.choice(GIVEN_FEMALE if sex == "female" else GIVEN_MALE),
        family=rng.choice(FAMILY),
        birth_date=date(end.year - age, rng.randint(1, 12), rng.randint(1, 28)),
        height_cm=rng.gauss(164 if sex == "female" else 177, 6),
        bmi=rng.uniform(23.0, 34.0),
        smoking=rng.choices(("never", "former", "current"), weights=(6, 3, 2))[0],
        hdl=rng.gauss(56 if sex == "female" else 46, 6),
        triglycerides=rng.uniform(90, 190),
        creatinine=rng.gauss(0.8 if sex == "female" else 1.0, 0.08),
    )
    # Diagnoses fall in the first half of the window so the record shows life after treatment;
    # the ones made on blood tests fall on a visit that has them.
    latest = max(1, visit_count // 2)
    lab_visits = [i for i in range(1, latest + 1) if _is_lab_visit(i, visit_count)] or [visit_count - 1]
    if rng.random() < 0.6:
        profile.conditions["hypertension"] = rng.randint(1, latest)
    roll = rng.random()
    if roll < 0.35:
        profile.conditions["diabetes"] = rng.choice(lab_visits)
    elif roll < 0.6:
        profile.conditions["prediabetes"] = 0
    if rng.random() < 0.5:
        profile.conditions["hyperlipidemia"] = rng.choice(lab_visits)
    if not profile.conditions:
        profile.conditions["hypertension"] = latest
    if profile.bmi >= 30:
        profile.conditions["obesity"] = 0
    profile.conditions = dict(sorted(profile.conditions.items(), key=lambda item: (item[1], item[0])))
    return profile


def _is_lab_visit(index: int, visit_count: int) -> bool:
    """Blood is drawn once a year: on every other visit, counting back from the latest."""
    return (visit_count - 1 - index) % 2 == 0


def _trend(index: int, diagnosed_at: int | None, *, healthy: float, peak: float, treated: float) -> float:
    """A value that climbs from `healthy` to `peak` at diagnosis, then settles towards `treated`."""
    if diagnosed_at is None:
        return healthy
    if index <= diagnosed_at:
        return healthy + (peak - healthy) * (index / diagnosed_at if diagnosed_at else 1.0)
    return treated + (peak - treated) * math.exp(-(index - diagnosed_at) / 1.5)


def _drift_weight(rng: random.Random, profile: _Profile, index: int, weight: float) -> float:
    dx = profile.conditions.get("diabetes")
    if dx is not None and index > dx:
        return weight - 0.4 + rng.gauss(0, 0.5)  # lifestyle advice and metformin after the diagnosis
    return weight + 0.25 + rng.gauss(0, 0.5)
