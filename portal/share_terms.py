"""What a patient shares, in plain categories, and the grant terms each choice becomes.

One home for both directions: the guided sharing form turns plain choices into a grant's
resource types and categories (share_terms), and the review step turns the terms back into
the words she reads before she signs (share_sentence). The sentence is made from the terms,
never from the choices, so it cannot say less than the grant allows.

Lab results and vital signs narrow only the grant's Observations, with categories qualified by
type ("Observation:system|code", consent.categories), so "lab results and medications" is one
grant: laboratory Observations and every MedicationRequest. "All measurements and test results"
chosen beside them leaves Observations unnarrowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.dateformat import format as date_format

from consent.categories import categories_for
from consent.purposes import ALL_RESOURCE_TYPES, Action, Purpose
from portal.plain import OBSERVATION_CATEGORY

EVERYTHING = "everything"


@dataclass(frozen=True)
class ShareKind:
    key: str
    label: str  # on the form: "Lab results"
    words: str  # in the sentence: "lab results"
    resource_type: str
    category: str = ""  # an Observation category code that narrows the grant, if any


SHARE_KINDS: tuple[ShareKind, ...] = (
    ShareKind(EVERYTHING, "Everything in my record", "your whole record", ALL_RESOURCE_TYPES),
    ShareKind("labs", "Lab results", "lab results", "Observation", "laboratory"),
    ShareKind("vitals", "Vital signs (blood pressure, weight, pulse …)", "vital signs", "Observation", "vital-signs"),
    ShareKind("measurements", "All measurements and test results", "measurements and test results", "Observation"),
    ShareKind("medications", "Medications", "medications", "MedicationRequest"),
    ShareKind("conditions", "Health problems and diagnoses", "health problems and diagnoses", "Condition"),
    ShareKind("allergies", "Allergies", "allergies", "AllergyIntolerance"),
    ShareKind("immunizations", "Vaccinations", "vaccinations", "Immunization"),
    ShareKind("procedures", "Procedures and operations", "procedures", "Procedure"),
    ShareKind("visits", "Visits", "visits", "Encounter"),
    ShareKind("reports", "Test reports", "test reports", "DiagnosticReport"),
    ShareKind("care-plans", "Care plans", "care plans", "CarePlan"),
    ShareKind("details", "My name, birth date and contact details", "name, birth date and contact details", "Patient"),
)
KINDS_BY_KEY = {kind.key: kind for kind in SHARE_KINDS}
WORDS_BY_TYPE = {kind.resource_type: kind.words for kind in SHARE_KINDS if not kind.category}
WORDS_BY_CATEGORY = {kind.category: kind.words for kind in SHARE_KINDS if kind.category}

PURPOSE_WORDS = {
    Purpose.TREAT: "for your care",
    Purpose.CAREMGT: "to manage your care",
    Purpose.HRESCH: "for health research",
    Purpose.CLINTRCH: "for a clinical trial",
    Purpose.PUBHLTH: "for public health",
    Purpose.HPAYMT: "to arrange payment for your care",
    Purpose.HOPERAT: "to run their service",
}
ACTION_WORDS = {
    Action.READ: "see",
    Action.WRITE: "add to",
    Action.RUN_MODEL: "run AI models on",
    Action.RUN_ANALYSIS: "run a study's approved analyses on",
}


def share_terms(keys: Sequence[str]) -> tuple[list[str], list[str]]:
    """The grant's resource types and categories ("Observation:system|code") for these plain choices."""
    kinds = [KINDS_BY_KEY[key] for key in keys if key in KINDS_BY_KEY]
    if any(kind.key == EVERYTHING for kind in kinds):
        return [ALL_RESOURCE_TYPES], []
    types = sorted({kind.resource_type for kind in kinds})
    observations = [kind for kind in kinds if kind.resource_type == "Observation"]
    if any(not kind.category for kind in observations):
        return types, []  # all measurements and test results: Observations are not narrowed
    codes = sorted({kind.category for kind in observations})
    return types, [f"Observation:{OBSERVATION_CATEGORY}|{code}" for code in codes]


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


# The order the form lists the kinds in is the order the sentence names them.
_ORDER = {kind.category or kind.resource_type: rank for rank, kind in enumerate(SHARE_KINDS)}


def what_words(resource_types: Sequence[str], categories: Sequence[str]) -> str:
    """What a grant's terms cover, in words: "your lab results and medications"."""
    if ALL_RESOURCE_TYPES in resource_types:
        return "your whole record"
    named: dict[str, int] = {}
    for resource_type in resource_types:
        narrowing = categories_for(categories, resource_type)
        if narrowing:
            for code in (c.split("|", 1)[-1] for c in narrowing):
                named.setdefault(WORDS_BY_CATEGORY.get(code, code.replace("-", " ")), _ORDER.get(code, len(_ORDER)))
        else:
            named.setdefault(WORDS_BY_TYPE.get(resource_type, resource_type), _ORDER.get(resource_type, len(_ORDER)))
    words = sorted(named, key=lambda w: (named[w], w))
    return f"your {_and(words)}" if words else "nothing"


def when_words(moment: datetime) -> str:
    """A moment in words, in the active time zone: "3 March 2027 at 14:00"."""
    return date_format(timezone.localtime(moment), r"j F Y \a\t H:i")


def share_sentence(
    *,
    who: str,
    resource_types: Sequence[str],
    categories: Sequence[str],
    actions: Sequence[str],
    purpose: str,
    not_before: datetime,
    not_after: datetime,
    now: datetime,
) -> str:
    """The review step in plain words, in the active time zone:
    "Dr Jane Smith at Riverside Clinic can see your lab results and medications, for your care, until 3 March 2027."
    """
    verbs = _and([ACTION_WORDS.get(Action(a), a) for a in actions]) if actions else "see"
    why = PURPOSE_WORDS.get(Purpose(purpose), Purpose(purpose).label.lower())
    start = f" from {when_words(not_before)}" if not_before > now else ""
    until = when_words(not_after)
    return f"{who} can {verbs} {what_words(resource_types, categories)}, {why},{start} until {until}."
