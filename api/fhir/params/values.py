"""Token, id and patient parameters: each value checked, each problem a 400 naming the parameter."""

from __future__ import annotations

import re

from django.http import QueryDict

from api.fhir.params.checks import bad
from api.outcomes import BadRequest


def token_groups(parameter: str, values: list[str]) -> tuple[tuple[str, ...], ...]:
    """Each value is a comma-separated OR of "system|code", "|code" (no system) or "code" (any system); ANDed."""
    groups = []
    for raw in values:
        group = tuple(part.strip() for part in raw.split(","))
        for token in group:
            _, bar, code = token.partition("|")
            if (bar and not code) or "|" in code or not token:
                raise bad(parameter, f'{token!r} must be "code", "system|code" or "|code" (a code without a system)')
        groups.append(group)
    return tuple(groups)


def id_list(parameter: str, values: list[str]) -> tuple[str, ...]:
    if len(values) > 1:
        raise bad(parameter, "give one value, with several ids separated by commas")
    ids = tuple(part.strip() for part in values[0].split(",") if part.strip()) if values else ()
    if any(not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", i) for i in ids):
        raise bad(parameter, "ids are 1 to 64 of A-Z a-z 0-9 - .")
    return ids


def patient_param(params: QueryDict, base: str = "") -> str | None:
    """The Patient id from `patient=<id>`, `patient=Patient/<id>` or `subject=Patient/<id>`; 400 when they disagree.

    With `base` (this server's FHIR base URL), an absolute reference to it counts as the relative one.
    """
    named: set[str] = set()
    for name in ("patient", "subject"):
        for raw in params.getlist(name):
            value = raw.strip()
            if base and value.startswith(base + "/"):
                value = value.removeprefix(base + "/")
            if name == "subject" and not value.startswith("Patient/"):
                raise bad("subject", "only Patient subjects are searchable (subject=Patient/<id>)")
            value = value.removeprefix("Patient/")
            if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", value):
                raise bad(name, "must be a Patient id")
            named.add(value)
    if len(named) > 1:
        raise BadRequest("search parameters patient and subject name different patients")
    return next(iter(named), None)
