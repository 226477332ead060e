"""How the portal shows things to one person (the time zone of her times)."""

from __future__ import annotations

from accounts.models import User
from healthledger.errors import HealthLedgerError
from portal.models import Preference


def time_zone_valid(name: str) -> bool:
    """An IANA time zone name this machine knows ("" means: follow the browser)."""
    return name == "" or name in _time_zones()


def _time_zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def preference_time_zone_set(*, user: User, time_zone: str) -> Preference:
    """Store the time zone the portal shows this person's times in ("" follows the browser)."""
    if not time_zone_valid(time_zone):
        raise HealthLedgerError("unknown time zone")  # the form offers known names only
    preference, _ = Preference.objects.update_or_create(user=user, defaults={"time_zone": time_zone})
    return preference
