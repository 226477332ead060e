"""People as the portal names them, and the directory of clinicians a patient shares with."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from accounts.models import ClinicianProfile, Role, User
from healthledger.errors import ResourceNotFound


def person_name(user: User) -> str:
    return user.get_full_name() or user.get_username()


def clinicians_directory() -> QuerySet[User]:
    """Clinicians a patient can share with, by name (only clinicians: never a patient, researcher or steward)."""
    return (
        User.objects.filter(role=Role.CLINICIAN, is_active=True)
        .select_related("clinician_profile")
        .order_by("last_name", "first_name", "username")
    )


@dataclass(frozen=True)
class DirectoryEntry:
    """One clinician as the sharing directory shows them."""

    user: User
    name: str  # "Dr Jane Smith"
    organisation: str
    specialty: str

    @property
    def words(self) -> str:
        """Who, the way the review step says it: "Dr Jane Smith at Riverside Clinic"."""
        return f"{self.name} at {self.organisation}" if self.organisation else self.name


def _profile(user: User) -> ClinicianProfile | None:
    try:
        return user.clinician_profile
    except ClinicianProfile.DoesNotExist:
        return None


def directory_entry(user: User) -> DirectoryEntry:
    profile = _profile(user)
    name = person_name(user)
    if profile is not None and profile.title and user.get_full_name():
        name = f"{profile.title} {name}"
    return DirectoryEntry(
        user=user,
        name=name,
        organisation=profile.organisation if profile is not None else "",
        specialty=profile.specialty if profile is not None else "",
    )


DIRECTORY_PAGE = 50


def clinician_directory_search(*, query: str = "") -> list[DirectoryEntry]:
    """Clinicians whose name, organisation or specialty holds every word of `query`, at most DIRECTORY_PAGE.

    Searches clinicians only, so no query, however chosen, tells a patient who else has an account.
    """
    found = clinicians_directory()
    for word in query.split()[:8]:
        found = found.filter(
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(username__icontains=word)
            | Q(clinician_profile__organisation__icontains=word)
            | Q(clinician_profile__specialty__icontains=word)
        )
    return [directory_entry(user) for user in found[:DIRECTORY_PAGE]]


def clinician_directory_get(*, clinician_id: object) -> DirectoryEntry:
    """One clinician of the directory; any other id (a patient's too) is simply not found."""
    try:
        user = clinicians_directory().filter(pk=int(str(clinician_id))).first()
    except ValueError:
        user = None
    if user is None:
        raise ResourceNotFound("clinician not found")
    return directory_entry(user)
