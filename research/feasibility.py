"""Feasibility counts before approval: roughly how many patients fit a study's eligibility.

Only patients who turned on "let studies find me" (ResearchPreference.findable) are counted, from the
blind index (keyed tokens: no record is decrypted, nobody's identity is returned). The answer is
obfuscated as i2b2/SHRINE do, and more: a bounded noise of at most NOISE_BOUND, drawn from an HMAC of
the query's hash under a server secret (so a repeated query, by anyone, gets the same noise and
averaging gains nothing), rounded to the nearest 5, and "10 or fewer" at or under the threshold.
Each researcher has a daily quota; a query repeated within a day returns its stored answer and costs
none. Each query is one access-log entry (the query hash, never a patient).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from audit.models import Outcome
from audit.services import LogEvent, access_log_append
from consent.purposes import Purpose
from healthledger.errors import HealthLedgerError
from records.models import Patient
from records.selectors import SearchCriteria, resource_matching
from research import disclosure, specs
from research.models import FeasibilityQuery

NOISE_BOUND = 3
FEW = "10 or fewer"


@dataclass
class FeasibilityRefused(HealthLedgerError):
    """Over the daily quota (429), or not a researcher (403)."""

    status: int = field(default=429, kw_only=True)


def quota() -> int:
    return int(getattr(settings, "RESEARCH_FEASIBILITY_QUOTA", 20))


def query_hash(criteria: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(orjson.dumps(criteria, option=orjson.OPT_SORT_KEYS)).hexdigest()


def noise(digest: str) -> int:
    """A bounded integer in [-NOISE_BOUND, NOISE_BOUND], fixed for a query hash under the server's secret."""
    key = hmac.new(settings.SECRET_KEY.encode(), b"healthledger.research.feasibility.v1", hashlib.sha256).digest()
    draw = hmac.new(key, digest.encode(), hashlib.sha256).digest()
    return int.from_bytes(draw[:8], "big") % (2 * NOISE_BOUND + 1) - NOISE_BOUND


def obfuscate(true_count: int, digest: str, t: disclosure.Thresholds) -> int | str:
    if true_count <= t.count:
        return FEW
    shown = disclosure.round_to(max(0, true_count + noise(digest)), t.rounding)
    return FEW if shown <= t.count else shown


def _years_ago(today: date, years: int) -> date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


def _fits(patient: Patient, criteria: dict[str, Any], today: date) -> bool:
    """Whether the patient's blind index carries every criterion (no decryption)."""
    person = SearchCriteria()
    if criteria.get("sex"):
        person = SearchCriteria(terms=(tuple(f"gender={s}" for s in criteria["sex"]),))
    if criteria.get("age"):
        low, high = criteria["age"]
        born_after = _years_ago(today, high + 1) + timedelta(days=1)
        person = SearchCriteria(terms=person.terms, date_ge=born_after, date_le=_years_ago(today, low))
    if (
        person != SearchCriteria()
        and not resource_matching(patient=patient, resource_type="Patient", criteria=person).exists()
    ):
        return False
    return all(
        resource_matching(
            patient=patient, resource_type="Condition", criteria=SearchCriteria(codes=((code,),))
        ).exists()
        for code in criteria.get("conditions", [])
    )


def feasibility_count(*, by: User, eligibility: object) -> dict[str, Any]:
    """The obfuscated number of findable patients fitting `eligibility` (the spec's eligibility shape)."""
    if by.role not in (Role.RESEARCHER, Role.STEWARD) or not by.is_active:
        raise FeasibilityRefused("feasibility counts are for researchers", status=403)
    criteria = specs.eligibility_validate(eligibility)
    digest = query_hash(criteria)
    with transaction.atomic():
        # Locks the researcher's row: two queries at once must not both pass the last unit of quota.
        User.objects.select_for_update().filter(pk=by.pk).first()
        return _answer(by, criteria, digest)


def _answer(by: User, criteria: dict[str, Any], digest: str) -> dict[str, Any]:
    now = timezone.now()
    since = now - timedelta(days=1)
    earlier = FeasibilityQuery.objects.filter(researcher=by, query_hash=digest, asked_at__gte=since).first()
    if earlier is not None:
        return {**earlier.answer, "repeated": True}
    used = FeasibilityQuery.objects.filter(researcher=by, asked_at__gte=since).count()
    if used >= quota():
        raise FeasibilityRefused(f"the daily quota of {quota()} feasibility queries is used up; try tomorrow")
    t = disclosure.thresholds()
    findable = Patient.objects.filter(erased_at__isnull=True, research_preference__findable=True)
    true_count = sum(1 for patient in findable.iterator(chunk_size=500) if _fits(patient, criteria, now.date()))
    answer = {
        "query_hash": digest,
        "criteria": criteria,
        "count": obfuscate(true_count, digest, t),
        "note": f"patients who let studies find them; noise of at most {NOISE_BOUND}, rounded to {t.rounding}",
        "quota_left": quota() - used - 1,
    }
    FeasibilityQuery.objects.create(researcher=by, query_hash=digest, query=criteria, answer=answer)
    access_log_append(
        event=LogEvent(
            actor=f"user:{by.pk}",
            action="research.feasibility",
            outcome=Outcome.PERMIT,
            purpose=Purpose.HRESCH,
            query=f"feasibility {digest}",
        )
    )
    return {**answer, "repeated": False}
