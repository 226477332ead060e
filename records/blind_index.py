"""Blind-index tokens: keyed HMACs of (patient, kind, value), so searches never decrypt.

Dates are indexed at year, month and day granularity; a range search is covered
by the fewest such buckets (whole years, then whole months, then days).
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Iterable
from datetime import date, timedelta

from records import crypto, keys

TOKEN_BYTES = 16
# Open-ended date searches are bounded here (an open range costs one token per year inside it);
# dates outside are still indexed, and found by a range that names them.
DATE_FLOOR = date(1900, 1, 1)
DATE_CEILING = date(2099, 12, 31)
# Explicit bounds are clamped here, so no request can ask for thousands of tokens.
DATE_MIN = date(1800, 1, 1)
DATE_MAX = date(2199, 12, 31)


def _digester() -> crypto.KeyedDigester:
    key = keys.index_key()
    cached = _digesters.get(key)
    if cached is None:
        _digesters.clear()
        cached = _digesters[key] = crypto.KeyedDigester(key, size=TOKEN_BYTES)
    return cached


_digesters: dict[bytes, crypto.KeyedDigester] = {}


def token(*, patient_id: uuid.UUID, kind: str, value: str) -> bytes:
    return _digester()(b"|".join((kind.encode("ascii"), patient_id.bytes, value.encode("utf-8"))))


def date_buckets(day: date) -> tuple[str, str, str]:
    return f"{day.year:04d}", f"{day.year:04d}-{day.month:02d}", day.isoformat()


def resource_tokens(
    *,
    patient_id: uuid.UUID,
    codes: Iterable[str],
    categories: Iterable[str],
    dates: Iterable[date],
    terms: Iterable[str] = (),
) -> set[bytes]:
    """Every token one resource version carries.

    Besides the search tokens, the resource's primary (clinically meaningful, first) date gets
    "sort" tokens at year, month and day, so a search can be ordered by date without decrypting.
    """
    digest = _digester()
    pid = patient_id.bytes
    # Each "system|code" and its bare code too: FHIR's `code=<code>` matches that code in any system
    # (a bare code has no "|", so it never equals a "system|code").
    codes = {variant for code in codes for variant in (code, code.partition("|")[2])}
    found = {digest(b"code|" + pid + b"|" + code.encode("utf-8")) for code in codes}
    found.update(digest(b"category|" + pid + b"|" + category.encode("utf-8")) for category in categories)
    found.update(digest(b"term|" + pid + b"|" + term.encode("utf-8")) for term in terms)
    dates = list(dates)
    buckets = {bucket for day in dates for bucket in date_buckets(day)}
    found.update(digest(b"date|" + pid + b"|" + bucket.encode("ascii")) for bucket in buckets)
    if dates and DATE_MIN <= dates[0] <= DATE_MAX:
        found.update(digest(b"sort|" + pid + b"|" + bucket.encode("ascii")) for bucket in date_buckets(dates[0]))
    return found


def sort_tokens(*, patient_id: uuid.UUID, buckets: Iterable[str]) -> dict[bytes, str]:
    """token -> bucket for the primary-date buckets given ("2020", "2020-03" or "2020-03-14")."""
    return {token(patient_id=patient_id, kind="sort", value=bucket): bucket for bucket in buckets}


def sort_years() -> list[str]:
    return [f"{year:04d}" for year in range(DATE_MIN.year, DATE_MAX.year + 1)]


def sort_months(years: Iterable[str]) -> list[str]:
    return [f"{year}-{month:02d}" for year in years for month in range(1, 13)]


def sort_days(months: Iterable[str]) -> list[str]:
    days: list[str] = []
    for month in months:
        year, number = int(month[:4]), int(month[5:7])
        days.extend(f"{month}-{day:02d}" for day in range(1, calendar.monthrange(year, number)[1] + 1))
    return days


def date_cover(date_ge: date | None, date_le: date | None) -> list[str]:
    """The fewest year/month/day buckets whose union is exactly [date_ge, date_le]."""
    day = max(date_ge or DATE_FLOOR, DATE_MIN)
    last = min(date_le or DATE_CEILING, DATE_MAX)
    buckets: list[str] = []
    while day <= last:
        month_end = date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])
        if day.month == 1 and day.day == 1 and date(day.year, 12, 31) <= last:
            buckets.append(f"{day.year:04d}")
            day = date(day.year + 1, 1, 1)
        elif day.day == 1 and month_end <= last:
            buckets.append(f"{day.year:04d}-{day.month:02d}")
            day = month_end + timedelta(days=1)
        else:
            buckets.append(day.isoformat())
            day += timedelta(days=1)
    return buckets


def date_range_tokens(*, patient_id: uuid.UUID, date_ge: date | None, date_le: date | None) -> list[bytes]:
    return [token(patient_id=patient_id, kind="date", value=b) for b in date_cover(date_ge, date_le)]
