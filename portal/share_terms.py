"""What a patient shares, in plain categories, and the grant terms each choice becomes.

One home for both directions: the guided sharing form turns plain choices into a grant's
resource types and categories (share_terms), and the review step turns the terms back into
the words she reads before she signs (share_sentence). The sentence is made from the terms,
never from the choices, so it cannot say less than the grant allows.

A grant's categories narrow every type it names (consent.gate), so "lab results" can be
narrowed to laboratory Observations only when nothing but Observation kinds is chosen.
Chosen beside other kinds, lab results and vital signs widen to all measurements and test
results; the form says so, and the sentence says exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.dateformat import format as date_format

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
    """The grant's resource types and Observation categories ("system|code") for these plain choices."""
    kinds = [KINDS_BY_KEY[key] for key in keys if key in KINDS_BY_KEY]
    if any(kind.key == EVERYTHING for kind in kinds):
        return [ALL_RESOURCE_TYPES], []
    types = sorted({kind.resource_type for kind in kinds})
    categories = sorted({kind.category for kind in kinds if kind.category})
    narrowed = types == ["Observation"] and not any(k.resource_type == "Observation" and not k.category for k in kinds)
    if not narrowed:
        categories = []
    return types, [f"{OBSERVATION_CATEGORY}|{code}" for code in categories]


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def what_words(resource_types: Sequence[str], categories: Sequence[str]) -> str:
    """What a grant's terms cover, in words: "your lab results and medications"."""
    if ALL_RESOURCE_TYPES in resource_types:
        return "your whole record"
    words: list[str] = []
    for resource_type in resource_types:
        if resource_type == "Observation" and categories:
            codes = [c.split("|", 1)[-1] for c in categories]
            words.extend(WORDS_BY_CATEGORY.get(code, code.replace("-", " ")) for code in codes)
        else:
            words.append(WORDS_BY_TYPE.get(resource_type, resource_type))
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
