"""The Patient resource as an equation reads it: the one Patient, death, age, sex, OMB race categories."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

from diagnostics.inference.base import Contribution
from diagnostics.inference.values.core import US_CORE_RACE, Absent, Resource, out_of_range, parse_day, problem


def the_patient(resources: Sequence[Resource]) -> Resource | Absent:
    """The one Patient resource the worker passed."""
    patients = [r for r in resources if type(r) is dict and r.get("resourceType") == "Patient"]
    if not patients:
        return Absent("the Patient resource was not provided")
    if len(patients) > 1:
        return Absent("more than one Patient resource was provided")
    patient = patients[0]
    return patient


DECEASED = Absent("the patient died on or before the score date", kind="excluded")


def deceased_by(patient: Resource, as_of: date) -> bool:
    if patient.get("deceasedBoolean") is True:
        return True
    day = parse_day(patient.get("deceasedDateTime"))
    return day is not None and day <= as_of


def age_at(patient: Resource, as_of: date) -> int | Absent:
    """Age in whole years on `as_of`; a birth date without its day cannot give an exact age."""
    birth = parse_day(patient.get("birthDate"))
    if birth is None:
        return Absent("the patient's full birth date (year, month and day) is not recorded")
    if birth > as_of:
        return Absent("the patient's birth date is after the score date")
    return as_of.year - birth.year - ((as_of.month, as_of.day) < (birth.month, birth.day))


def adult_demographics(
    inputs: Mapping[str, Sequence[Resource]],
    as_of: date,
    *,
    ages: tuple[float, float],
    for_whom: str,
    problems: list[Contribution],
) -> tuple[Resource | Absent, int | Absent, str | Absent]:
    """The Patient, age and sex an equation needs; what is missing, a death by `as_of`, or an age outside
    `ages` (the people the equation is `for_whom`) is added to `problems`."""
    age: int | Absent = Absent("no Patient resource")
    sex: str | Absent = Absent("no Patient resource")
    patient = the_patient(inputs.get("patient", ()))
    if isinstance(patient, Absent):
        problems.append(problem("patient", patient))
    elif deceased_by(patient, as_of):
        problems.append(problem("patient", DECEASED))
    else:
        age, sex = age_at(patient, as_of), sex_of(patient)
        for name, got in (("age", age), ("sex", sex)):
            if isinstance(got, Absent):
                problems.append(problem(name, got))
        if isinstance(age, int):
            bad_age = out_of_range("age", age, ages, "years", for_whom)
            problems.extend([bad_age] if bad_age else [])
    return patient, age, sex


def sex_of(patient: Resource) -> str | Absent:
    """ "female" or "male" from Patient.gender; the equations are defined for these two only."""
    gender = patient.get("gender")
    if gender in ("female", "male"):
        return str(gender)
    if gender is None:
        return Absent("the patient's administrative gender is not recorded")
    return Absent(f"the equations are defined for female and male only (recorded: {gender})")


def omb_race_codes(patient: Resource) -> list[str]:
    """The OMB race category codes of the us-core-race extension, in order."""
    found = []
    for extension in patient.get("extension") or ():
        if type(extension) is not dict or extension.get("url") != US_CORE_RACE:
            continue
        for part in extension.get("extension") or ():
            if type(part) is dict and part.get("url") == "ombCategory":
                coding = part.get("valueCoding")
                if type(coding) is dict and type(coding.get("code")) is str:
                    found.append(coding["code"])
    return found
