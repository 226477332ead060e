"""What every search checks first: control characters, and the parameters it ignores or refuses (strict)."""

from __future__ import annotations

import re

from django.http import HttpRequest, QueryDict

from api.outcomes import BadRequest

# Accepted everywhere and without effect on the result (_total: the total is always counted exactly).
IGNORED = frozenset({"_format", "_pretty", "_total"})
PAGING = frozenset({"_count", "_offset", "_summary", "_elements", "_include", "_revinclude"})

# C0 controls and DEL; tab, CR and LF mean nothing in a search either.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def bad(parameter: str, message: str) -> BadRequest:
    return BadRequest(f"search parameter {parameter}: {message}")


def strict(request: HttpRequest) -> bool:
    """Whether the client asked for `Prefer: handling=strict` (FHIR: refuse what cannot be honoured)."""
    prefer = request.headers.get("Prefer", "")
    return any(part.strip().replace(" ", "") == "handling=strict" for part in prefer.split(";") + prefer.split(","))


def unknown_check(params: QueryDict, supported: frozenset[str], *, strict: bool = True) -> tuple[str, ...]:
    """The parameters this search ignores; 400 for a control character anywhere.

    FHIR's rule: a parameter the server does not support for this type is ignored (and the
    searchset's self link leaves it out), unless the client sent `Prefer: handling=strict`: 400.
    """
    for name, values in params.lists():
        if _CONTROL.search(name) or any(_CONTROL.search(value) for value in values):
            raise bad(_CONTROL.sub("?", name)[:64], "a control character is not allowed in a search")
    known = supported | IGNORED | PAGING
    unknown = tuple(sorted({name for name in params if name not in known}))
    if unknown and strict:
        raise BadRequest(
            f"unsupported search parameter(s): {', '.join(unknown)}; supported: {', '.join(sorted(supported | PAGING))}"
        )
    return unknown
